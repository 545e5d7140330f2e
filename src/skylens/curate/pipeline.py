"""The in-process runner of curate steps: reader -> batch function -> atomic writer, with a progress bar.

Every step is a **pure function over batches** (STYLE.md #6), so ``skylens.scale`` can map it
with Ray Data instead of this loop. The contract for ``scale/``:

    BatchFn = Callable[[list[dict]], tuple[list[dict], list[dict]]]

    records_out, removed = fn(batch)

* ``batch``: a list of dicts: input *items* for source steps (``from_folders`` items are
  ``{"path", "class_folder", "label", "split", "source"}``, see each module's ``items``
  function) or curated records (:mod:`skylens.curate.records`) for the other steps.
* ``records_out``: records (dicts with every field of ``records.SCHEMA``).
* ``removed``: ``{"id", "reason", ...}`` notes for records the batch dropped (logged in
  ``removed.jsonl`` and counted in the manifest).
* Batch functions are module-level functions bound with :func:`functools.partial`, hence
  picklable; they hold no state between batches. Use :func:`arrow_batch_fn` to get a
  ``pyarrow.Table -> pyarrow.Table`` function for ``Dataset.map_batches(batch_format="pyarrow")``.

``dedupe`` is the one step with a global part: its per-record features (digest, perceptual
hash, embedding) are a batch function (``dedupe.features_batch``); grouping near duplicates
needs all of them and runs after the map.

Where the map runs is a :class:`Runner` (``skylens curate ... --ray [--ray-address A]``): in this
process, or on Ray Data through :func:`skylens.scale.map_batches`, which returns results in batch
order, so the one writer in the caller writes the same dataset either way.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from skylens.curate.records import Record, to_table
from skylens.curate.store import DatasetWriter
from skylens.errors import InputError

BatchFn = Callable[[list[dict]], tuple[list[Record], list[dict]]]


@dataclass(frozen=True)
class Runner:
    """Where curate steps map their batch functions.

    Attributes:
        kind: ``"local"`` (this process) or ``"ray"`` (Ray Data; a local Ray unless ``address``).
        address: a Ray cluster's address (``ray://HOST:10001``, ``auto``), only with ``ray``.
        workers: Ray CPUs of a local Ray (default: every core); ignored with ``local``.
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise InputError(f"runner must be 'local' or 'ray', got {self.kind!r}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")

    @classmethod
    def from_options(
        cls, ray: bool = False, address: str | None = None, workers: int | None = None
    ) -> Runner:
        """The runner the CLI's ``--ray`` / ``--ray-address`` / ``--workers`` ask for."""
        return cls("ray" if ray or address else "local", address or None, workers)


LOCAL = Runner()


def map_ordered(
    batches: Iterable[list[Any]], fn: Callable[[list[Any]], Any], runner: Runner = LOCAL
) -> Iterator[tuple[list[Any], Any]]:
    """Yield ``(batch, fn(batch))`` in batch order, computed in process or on Ray Data."""
    if runner.kind == "local":
        for batch in batches:
            yield batch, fn(batch)
        return
    from skylens.scale import map_batches

    batches = list(batches)  # Ray Data reads its input from a list (from_items)
    results = map_batches(batches, functools.partial(_first_batch, fn=fn), batch_size=1,
                          runner="ray", workers=runner.workers, address=runner.address)  # fmt: skip
    yield from zip(batches, results, strict=True)


def _first_batch(one: list[list[Any]], fn: Callable[[list[Any]], Any]) -> Any:
    # map_batches hands a list of items; here each item is one whole curate batch
    return fn(one[0])


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


def progress_bar(total: int | None, desc: str):
    """A tqdm bar on stderr, drawn when stderr is a terminal or ``SKYLENS_PROGRESS=1``."""
    from tqdm.auto import tqdm

    shown = sys.stderr.isatty() or os.environ.get("SKYLENS_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit="rec", disable=not shown, file=sys.stderr)


def run_batches(
    batches: Iterable[list[dict]],
    fn: BatchFn,
    writer: DatasetWriter,
    *,
    total: int | None = None,
    desc: str = "curate",
    runner: Runner = LOCAL,
) -> None:
    """Apply ``fn`` to each batch (where ``runner`` says), write what it returns in batch order,
    log what it removed."""
    with progress_bar(total, desc) as bar:
        for batch, (kept, removed) in map_ordered(batches, fn, runner):
            writer.write(kept)
            for note in removed:
                note = dict(note)
                writer.removed(str(note.pop("id")), str(note.pop("reason")), **note)
            bar.update(len(batch))


def arrow_batch_fn(fn: BatchFn) -> Callable:
    """Wrap a record batch function as ``pyarrow.Table -> pyarrow.Table`` (kept records only),
    the shape Ray Data's ``map_batches(..., batch_format="pyarrow")`` calls."""
    return _ArrowBatchFn(fn)


class _ArrowBatchFn:
    def __init__(self, fn: BatchFn) -> None:
        self.fn = fn

    def __call__(self, table):
        kept, _removed = self.fn(table.to_pylist())
        return to_table(kept)


def step_info(command: str, **args: Any) -> dict:
    """The manifest entry of a step: its command and arguments (paths as strings)."""
    clean = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in args.items()}
    clean = {
        k: ([str(x) for x in v] if isinstance(v, Sequence) and not isinstance(v, str) else v)
        for k, v in clean.items()
    }
    return {"command": command, "args": clean}
