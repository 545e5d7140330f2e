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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from skylens.curate.records import Record, to_table
from skylens.curate.store import DatasetWriter

BatchFn = Callable[[list[dict]], tuple[list[Record], list[dict]]]


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
) -> None:
    """Apply ``fn`` to each batch, write what it returns, log what it removed."""
    with progress_bar(total, desc) as bar:
        for batch in batches:
            kept, removed = fn(batch)
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
