"""Micro-batching of concurrent requests for the REST service.

A text encoder costs about the same for a handful of queries as for one (the price is the forward
pass, not the batch row), and an exact search over vectors held in memory reads the matrix once
per batch (``skylens.index.memory``), so under load the service answers the text searches that
arrive together with one ``encode_texts`` call and one matrix product, off the event loop.
This is the dynamic batching of model servers (Clipper, Crankshaw et al., NSDI 2017; NVIDIA
Triton's dynamic batcher): a request waits at most ``max_wait_s`` for company, a full batch goes
at once, and at most ``max_inflight`` batches run at a time, so while one batch is computed the
next keeps filling instead of many small batches fighting over the CPU.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

EncodeFn = Callable[[Sequence[str]], np.ndarray]
MAX_PARALLEL_BATCHES = 8


def configure_threads(threads: int = 1) -> int:
    """Give each model call in this process ``threads`` CPU threads; return how many batches
    the service should run at once to keep the cores busy.

    A server under load has many requests: a batch per core, each on one thread, beats every
    batch spreading over all cores, where the thread pools of onnxruntime, torch and BLAS spin
    against each other (``bench/load.py`` on 2 cores: 8.76 -> 3.6 ms of CPU per text search). A
    single large request (a change map of a big scene) then runs on ``threads`` cores; raise it
    for a service with one user. Process-wide: call it in the serving process, before the model
    loads (onnxruntime sessions read ``SKYLENS_THREADS`` when they are created).
    """
    import threadpoolctl
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["SKYLENS_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)  # numpy's BLAS, from now on
    return max(2, min(MAX_PARALLEL_BATCHES, (os.cpu_count() or 1) // threads))


T = TypeVar("T", bound=Hashable)
R = TypeVar("R")


@dataclass
class _LoopQueue:
    """Waiting requests of one event loop."""

    items: list = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    due: bool = False  # the oldest waiting request has waited max_wait_s
    sizes: list[int] = field(default_factory=list)  # one per batch in flight: its requests


class MicroBatcher(Generic[T, R]):
    """Collects concurrent ``submit`` calls and answers them with one ``batch_fn`` call per batch.

    Each event loop gets its own queue, so one batcher may serve the loops of a test client;
    under uvicorn there is one loop. Equal items in a batch are computed once.

    Args:
        batch_fn: ``items -> results`` (one per item, in order); runs in a worker thread.
        max_wait_s: the longest a request waits for others before its batch may go (seconds).
        max_batch: a batch goes as soon as it holds this many requests; never more per call.
        max_inflight: ``batch_fn`` calls allowed at once; later batches wait and grow meanwhile.
        balance: while other batches run, a batch that is not full waits until it holds this
            fraction of the smallest of them (or until one finishes); 0 sends it when due.
            Higher evens the batches out but leaves a core idle while the batch waits (under
            bench/load.py's 50 clients 0.5 kept the server's cores less busy than 0.25).

    Attributes:
        calls: how many times ``batch_fn`` ran.
        queries: how many requests were answered.
    """

    def __init__(
        self,
        batch_fn: Callable[[list[T]], Sequence[R]],
        *,
        max_wait_s: float = 0.005,
        max_batch: int = 64,
        max_inflight: int = 1,
        balance: float = 0.25,
    ) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0 seconds, got {max_wait_s}")
        if max_batch < 1 or max_inflight < 1:
            raise ValueError(
                f"max_batch and max_inflight must be >= 1, got {max_batch}, {max_inflight}"
            )
        if balance < 0:
            raise ValueError(f"balance must be >= 0, got {balance}")
        self.batch_fn = batch_fn
        self.max_wait_s = float(max_wait_s)
        self.max_batch = int(max_batch)
        self.max_inflight = int(max_inflight)
        self.balance = float(balance)
        self.calls = 0
        self.queries = 0
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, item: T) -> R:
        """The result for ``item``, computed in a batch with its neighbours."""
        loop = asyncio.get_running_loop()
        q = self._queues.setdefault(loop, _LoopQueue())
        future: asyncio.Future = loop.create_future()
        q.items.append(item)
        q.futures.append(future)
        if self.max_wait_s == 0:
            q.due = True
        elif q.timer is None and not q.due:
            q.timer = loop.call_later(self.max_wait_s, self._on_timer, loop, q)
        self._start_ready(loop, q)
        return await future

    def _on_timer(self, loop: asyncio.AbstractEventLoop, q: _LoopQueue) -> None:
        q.timer = None
        q.due = True
        self._start_ready(loop, q)

    def _ready(self, q: _LoopQueue) -> bool:
        """Whether the waiting requests should go as a batch now.

        A full batch goes at once. Otherwise the requests must have waited ``max_wait_s``, and
        while other batches run, the new one must hold at least ``balance`` times the smallest
        of them: a batch of two that leaves beside a batch of thirty costs nearly as much as one
        of thirty (the encoder call and the matrix product have a fixed price) and under load the
        two would keep alternating, big and tiny. The requests that wait go when a batch in
        flight finishes, at the latest.
        """
        if not q.items or len(q.sizes) >= self.max_inflight:
            return False
        if len(q.items) >= self.max_batch:
            return True
        return q.due and (not q.sizes or len(q.items) >= self.balance * min(q.sizes))

    def _start_ready(self, loop: asyncio.AbstractEventLoop, q: _LoopQueue) -> None:
        while self._ready(q):
            items, q.items = q.items[: self.max_batch], q.items[self.max_batch :]
            futures, q.futures = q.futures[: self.max_batch], q.futures[self.max_batch :]
            q.sizes.append(len(items))
            task = loop.create_task(self._run(loop, q, items, futures))
            self._tasks.add(task)  # keep a reference until done
            task.add_done_callback(self._tasks.discard)
        if not q.items:
            q.due = False
            if q.timer is not None:
                q.timer.cancel()
                q.timer = None

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        q: _LoopQueue,
        items: list[T],
        futures: list[asyncio.Future],
    ) -> None:
        try:
            await self._run_batch(items, futures)
        finally:
            q.sizes.remove(len(items))
            if q.items and self.max_wait_s > 0:
                # the callers just answered send their next requests together: collect them for
                # max_wait_s rather than sending the first few that came (bench/load.py)
                q.due = False
                if q.timer is not None:
                    q.timer.cancel()
                q.timer = loop.call_later(self.max_wait_s, self._on_timer, loop, q)
            elif q.items:
                q.due = True
            self._start_ready(loop, q)

    async def _run_batch(self, items: list[T], futures: list[asyncio.Future]) -> None:
        unique = list(dict.fromkeys(items))  # the same request twice is computed once
        try:
            self.calls += 1
            results = list(await run_in_threadpool(self.batch_fn, unique))
            if len(results) != len(unique):
                raise RuntimeError(f"batch function gave {len(results)} results for {len(unique)}")
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        row = {item: i for i, item in enumerate(unique)}
        self.queries += len(items)
        for item, fut in zip(items, futures, strict=True):
            if not fut.done():  # the caller may have gone away
                fut.set_result(results[row[item]])


class TextBatcher(MicroBatcher[str, np.ndarray]):
    """Embeds concurrent texts in batches: ``await batcher.encode(text)`` gives its row.

    Args:
        encode_fn: ``texts -> (N, D)`` array, e.g. ``model.encode_texts``; runs in a worker thread.
        max_wait_s, max_batch, max_inflight, balance: as for ``MicroBatcher``.
    """

    def __init__(self, encode_fn: EncodeFn, **kwargs) -> None:
        self.encode_fn = encode_fn
        super().__init__(self._encode_rows, **kwargs)

    def _encode_rows(self, texts: list[str]) -> list[np.ndarray]:
        vectors = np.asarray(self.encode_fn(texts), np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise RuntimeError(f"encoder returned shape {vectors.shape} for {len(texts)} texts")
        return list(vectors)

    async def encode(self, text: str) -> np.ndarray:
        """The embedding of one text (a 1-d float32 row), computed in a batch with its neighbours."""
        return await self.submit(text)
