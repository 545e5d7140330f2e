"""``merge``: several curated datasets -> one (sources side by side), refusing repeated ids.

Each source is curated by its own step; training wants them in one table. Records keep their
``source``, ``licence`` and ``split``; a record whose id already came from an earlier input is
dropped and logged (ids hash source + image + window, so a repeat is the same record twice).
The manifest keeps every input's steps under ``inputs`` so the history stays complete.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from skylens.curate.pipeline import progress_bar, step_info
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.errors import InputError


def merge(
    datasets: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> CuratedDataset:
    """Concatenate curated datasets into a new one.

    Args:
        datasets: two or more curated dataset folders.
        out: new dataset folder.
        name: name of the merged dataset (default: the output folder's name).
    """
    if len(datasets) < 1:
        raise InputError("merge needs at least one dataset")
    inputs = [open_dataset(d) for d in datasets]
    step = step_info("merge", datasets=list(datasets))
    step["input_count"] = sum(d.count for d in inputs)
    step["inputs"] = [
        {"path": str(d.path), "name": d.manifest.get("name"), "steps": d.manifest.get("steps", [])}
        for d in inputs
    ]
    seen: set[str] = set()
    with (
        DatasetWriter(out, step=step, name=name, overwrite=overwrite) as w,
        progress_bar(step["input_count"], "merge") as bar,
    ):
        for d in inputs:
            for batch in d.batches():
                keep = []
                for rec in batch:
                    if rec["id"] in seen:
                        w.removed(rec["id"], "same id in an earlier input", dataset=str(d.path))
                    else:
                        seen.add(rec["id"])
                        keep.append(rec)
                w.write(keep)
                bar.update(len(batch))
    return open_dataset(out)
