"""``merge``: several curated datasets -> one (sources side by side), refusing repeated ids.

Each source is curated by its own step; training wants them in one table. Records keep their
``source``, ``licence`` and ``split``; a record whose id already came from an earlier input is
dropped and logged (ids hash source + image + window, so a repeat is the same record twice).
The manifest keeps every input's steps under ``inputs`` so the history stays complete.

With ``by_digest`` (GAIA-style joining of sources), records of the same image content (equal
``digest``: same bytes, same window) become one: texts are united (repeats dropped), objects and
label taken from the first that has them, the other sources listed in ``meta["also_from"]``,
and the split is the most held-out of theirs (``test`` > ``val`` > ``train``), so joining never
moves an evaluation image into training. This holds the joined records in memory.
"""

from __future__ import annotations

import json
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
    by_digest: bool = False,
    overwrite: bool = False,
) -> CuratedDataset:
    """Concatenate curated datasets into a new one.

    Args:
        datasets: two or more curated dataset folders.
        out: new dataset folder.
        name: name of the merged dataset (default: the output folder's name).
        by_digest: join records of the same image content (see the module docstring).
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
    if by_digest:
        return _merge_by_digest(inputs, out, step, name, overwrite)
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


SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def join_records(first: dict, other: dict) -> dict:
    """``first`` with ``other``'s texts, objects, label and source joined in (see the module)."""
    out = dict(first)
    seen = {(t["kind"], t["text"], t.get("answer")) for t in first["texts"] or []}
    extra = [t for t in other["texts"] or [] if (t["kind"], t["text"], t.get("answer")) not in seen]
    out["texts"] = list(first["texts"] or []) + extra
    out["objects"] = first["objects"] or other["objects"]
    out["label"] = first["label"] or other["label"]
    if SPLIT_RANK.get(other["split"], 0) > SPLIT_RANK.get(first["split"], 0):
        out["split"] = other["split"]
    meta = json.loads(first["meta"]) if first.get("meta") else {}
    also = meta.setdefault("also_from", [])
    if other["source"] not in also and other["source"] != first["source"]:
        also.append(other["source"])
    out["meta"] = json.dumps(meta, sort_keys=True, ensure_ascii=False)
    return out


def _merge_by_digest(inputs, out, step, name, overwrite) -> CuratedDataset:
    joined: dict[str, dict] = {}
    loose: list[dict] = []
    with progress_bar(step["input_count"], "merge") as bar:
        for d in inputs:
            for batch in d.batches():
                for rec in batch:
                    key = rec.get("digest")
                    if not key:
                        loose.append(rec)
                    elif key in joined:
                        joined[key] = join_records(joined[key], rec)
                    else:
                        joined[key] = rec
                bar.update(len(batch))
    step["joined"] = step["input_count"] - len(joined) - len(loose)
    with DatasetWriter(out, step=step, name=name, overwrite=overwrite) as w:
        w.write(list(joined.values()) + loose)
    return open_dataset(out)
