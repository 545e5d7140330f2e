"""A generic reader -> mapper -> writer runner: map a batch function over items, in this process or
on Ray Data, and hand the results to ONE writer in the caller (STYLE.md #6, clip-retrieval's
runner/distributor split).

The batch-function contract (what ``skylens.curate`` steps are, ``curate/pipeline.py``)::

    result = fn(batch)            # batch: list[dict] of items, result: anything picklable

* a **function** (module-level, or a ``functools.partial`` of one) holds no state and runs as
  Ray tasks;
* a **class** is constructed once per worker with ``constructor_kwargs`` (load a model there)
  and then called on batch after batch: ``cls(**constructor_kwargs)(batch)``; it runs as a Ray
  actor pool of ``workers`` actors (``ActorPoolStrategy``), so the model loads once a worker.

A :class:`~skylens.errors.SkylensError` that ``fn`` raises on a worker is raised again, as
itself, in the caller. Items and results travel pickled (one binary column), so they may hold any Python values
(numpy arrays, nested dicts, bytes). Results come back in the order of the batches, so a writer
that keys on ids (``ChipIndex.add``, curate's ``DatasetWriter``) sees a deterministic stream;
being the only writer, it needs no coordination between workers.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from skylens.errors import InputError, SkylensError
from skylens.scale.runtime import ray_session

RUNNERS = ("local", "ray")


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of at most ``size`` consecutive items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def map_batches(
    items: Sequence[Any],
    fn: Callable[[list[Any]], Any] | type,
    *,
    batch_size: int = 64,
    runner: str = "ray",
    workers: int | None = None,
    address: str | None = None,
    constructor_kwargs: dict | None = None,
    cpus_per_worker: float = 1.0,
) -> Iterator[Any]:
    """Yield ``fn(batch)`` for consecutive batches of ``items``, in order.

    Args:
        items: the dataset (files, windows, records), each item picklable.
        fn: a batch function or a class (see the module docstring).
        batch_size: items per call of ``fn``.
        runner: ``"ray"`` (Ray Data; local Ray unless ``address``) or ``"local"`` (this
            process, same results; no Ray needed).
        workers: parallel workers (Ray tasks at a time, or actors); default: the CPUs of the
            local Ray.
        address: a Ray cluster's address (``skylens.scale.runtime.ray_session``).
        constructor_kwargs: arguments of ``fn`` when it is a class.
        cpus_per_worker: Ray CPUs each task or actor reserves.

    Raises:
        InputError: an unknown runner or a batch size below 1.
    """
    if runner not in RUNNERS:
        raise InputError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if runner == "local":
        call = fn(**(constructor_kwargs or {})) if isinstance(fn, type) else fn
        for batch in batched(items, int(batch_size)):
            yield call(batch)
        return
    with ray_session(address, num_cpus=workers) as ray:
        ds = ray.data.from_items(
            [{"batch": pickle.dumps(b)} for b in batched(items, int(batch_size))]
        )
        ds.context.execution_options.preserve_order = True
        stage: dict = {"batch_size": 1, "batch_format": "numpy", "num_cpus": cpus_per_worker}
        if isinstance(fn, type):
            ds = ds.map_batches(
                _ApplyClass,
                fn_constructor_kwargs={"cls": fn, "kwargs": constructor_kwargs or {}},
                concurrency=int(workers or ray.cluster_resources().get("CPU", 1)),
                **stage,
            )
        else:
            ds = ds.map_batches(_apply_function, fn_kwargs={"fn": fn}, **stage)
        for row in ds.iter_rows():
            result = pickle.loads(row["result"])
            if isinstance(result, _Raised):
                raise result.error()
            yield result


class _Raised:
    """A skylens error ``fn`` raised on a worker, carried back so that the caller gets the same
    typed error (naming the input) as in process, not Ray's wrapped traceback. Its class, args
    and attributes travel, not the error: a subclass's ``__init__`` may take other arguments."""

    def __init__(self, error: SkylensError) -> None:
        self.cls, self.args, self.state = type(error), error.args, dict(vars(error))

    def error(self) -> SkylensError:
        err = self.cls.__new__(self.cls)
        err.args = self.args
        vars(err).update(self.state)
        return err


def _apply(call: Callable, batch: dict) -> dict:
    out = []
    for b in batch["batch"]:
        try:
            result = call(pickle.loads(b))
        except SkylensError as exc:
            result = _Raised(exc)
        out.append(pickle.dumps(result))
    return {"result": out}


def _apply_function(batch: dict, fn: Callable) -> dict:
    return _apply(fn, batch)


class _ApplyClass:
    """A Ray actor holding one instance of the user's class (its model loads once here)."""

    def __init__(self, cls: type, kwargs: dict) -> None:
        self.instance = cls(**kwargs)

    def __call__(self, batch: dict) -> dict:
        return _apply(self.instance, batch)
