"""Micro-batching of concurrent text queries for the REST service.

A text encoder costs about the same for a handful of queries as for one (the price is the forward
pass, not the batch row), so under load the service embeds the queries that arrive together in one
``encode_texts`` call, off the event loop. This is the dynamic batching of model servers (Clipper,
Crankshaw et al., NSDI 2017; NVIDIA Triton's dynamic batcher): a query waits at most
``max_wait_s`` for company, a full batch goes at once, and at most ``max_inflight`` batches run at
a time, so while the encoder is busy the next batch keeps filling instead of many small batches
fighting over the CPU.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from starlette.concurrency import run_in_threadpool

EncodeFn = Callable[[Sequence[str]], np.ndarray]


@dataclass
class _LoopQueue:
    """Waiting queries of one event loop."""

    texts: list[str] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    due: bool = False  # the oldest waiting query has waited max_wait_s
    inflight: int = 0


class TextBatcher:
    """Collects concurrent ``encode`` calls and embeds them with one ``encode_fn`` call per batch.

    Each event loop gets its own queue, so one batcher may serve the loops of a test client;
    under uvicorn there is one loop.

    Args:
        encode_fn: ``texts -> (N, D)`` array, e.g. ``model.encode_texts``; runs in a worker thread.
        max_wait_s: the longest a query waits for others before its batch may go (seconds).
        max_batch: a batch goes as soon as it holds this many queries; never more per call.
        max_inflight: encoder calls allowed at once; later batches wait and grow meanwhile.

    Attributes:
        calls: how many times ``encode_fn`` ran.
        queries: how many queries were answered.
    """

    def __init__(
        self,
        encode_fn: EncodeFn,
        *,
        max_wait_s: float = 0.005,
        max_batch: int = 64,
        max_inflight: int = 1,
    ) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0 seconds, got {max_wait_s}")
        if max_batch < 1 or max_inflight < 1:
            raise ValueError(
                f"max_batch and max_inflight must be >= 1, got {max_batch}, {max_inflight}"
            )
        self.encode_fn = encode_fn
        self.max_wait_s = float(max_wait_s)
        self.max_batch = int(max_batch)
        self.max_inflight = int(max_inflight)
        self.calls = 0
        self.queries = 0
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task] = set()

    async def encode(self, text: str) -> np.ndarray:
        """The embedding of one text (a 1-d float32 row), computed in a batch with its neighbours."""
        loop = asyncio.get_running_loop()
        q = self._queues.setdefault(loop, _LoopQueue())
        future: asyncio.Future = loop.create_future()
        q.texts.append(text)
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

    def _start_ready(self, loop: asyncio.AbstractEventLoop, q: _LoopQueue) -> None:
        while (
            q.texts and q.inflight < self.max_inflight and (q.due or len(q.texts) >= self.max_batch)
        ):
            texts, q.texts = q.texts[: self.max_batch], q.texts[self.max_batch :]
            futures, q.futures = q.futures[: self.max_batch], q.futures[self.max_batch :]
            q.inflight += 1
            task = loop.create_task(self._run(loop, q, texts, futures))
            self._tasks.add(task)  # keep a reference until done
            task.add_done_callback(self._tasks.discard)
        if not q.texts:
            q.due = False
            if q.timer is not None:
                q.timer.cancel()
                q.timer = None

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        q: _LoopQueue,
        texts: list[str],
        futures: list[asyncio.Future],
    ) -> None:
        try:
            await self._encode_batch(texts, futures)
        finally:
            q.inflight -= 1
            if q.texts:
                q.due = True  # they waited at least as long as this batch took
            self._start_ready(loop, q)

    async def _encode_batch(self, texts: list[str], futures: list[asyncio.Future]) -> None:
        unique = list(dict.fromkeys(texts))  # the same query twice is embedded once
        try:
            self.calls += 1
            vectors = np.asarray(await run_in_threadpool(self.encode_fn, unique), np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(unique):
                raise RuntimeError(
                    f"encoder returned shape {vectors.shape} for {len(unique)} texts"
                )
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        row = {t: i for i, t in enumerate(unique)}
        self.queries += len(texts)
        for text, fut in zip(texts, futures, strict=True):
            if not fut.done():  # the caller may have gone away
                fut.set_result(vectors[row[text]])
