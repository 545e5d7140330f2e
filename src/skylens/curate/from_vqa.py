"""``from-vqa``: question-answer annotations (RSIVQA, RSVQA) -> records whose texts are QA pairs.

The questions are read through the dataset registry's VQA readers (``rsivqa``, ``rsvqa_lr``,
``rsvqa_hr``), grouped by image: one record per image with one ``qa`` text per question and its
published answer. ``image_splits`` fixes each image's split from a Karpathy ``dataset.json``
(RSIVQA-UCM's images are UCM-Captions images, so its held-out images are UCM-Captions test).

The same image usually also comes from another source (UCM-Captions): ``merge --by-digest``
joins such records into one, so the QA lands next to the captions instead of being dropped
as a duplicate.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from skylens.curate.images import digest_of, readable_size
from skylens.curate.pipeline import LOCAL, Runner, batched, run_batches, step_info
from skylens.curate.records import Record, make_record, text
from skylens.curate.sources import licence_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.datasets import dataset_class
from skylens.errors import InputError


def vqa_items(root: str | os.PathLike[str], name: str = "rsivqa", **reader_args) -> list[dict]:
    """Items ``{"path", "qa", "split", "source", "sample_id"}``, one per image."""
    cls = dataset_class(name)
    if cls.task != "vqa":
        raise InputError(f"'{name}' is a {cls.task} dataset, not a VQA set")
    ds = cls(root, split="all", skip_missing=True, **reader_args)
    by_image: dict[str, dict] = {}
    for s in ds:
        path = str(Path(s["image"]).resolve())
        stem = Path(path).stem
        split = ds.split_of(stem) if hasattr(ds, "split_of") else "train"
        item = by_image.setdefault(
            path, {"path": path, "qa": [], "split": split, "source": cls.name, "sample_id": stem}
        )
        item["qa"].append((s["question"], s["answer"]))
    if not by_image:
        raise InputError(f"{root}: no question whose image was found ({name} layout)")
    return list(by_image.values())


def vqa_records(items: list[dict], skip_bad: bool = False) -> tuple[list[Record], list[dict]]:
    """Batch function: items of :func:`vqa_items` -> records (see ``pipeline.BatchFn``)."""
    out, removed = [], []
    for item in items:
        size = readable_size(item, skip_bad, removed)
        if size is None:
            continue
        width, height = size
        seen, texts = set(), []
        for q, a in item["qa"]:
            if (q, a) not in seen:
                seen.add((q, a))
                texts.append(text("qa", q, a))
        out.append(
            make_record(
                image_path=item["path"], width=width, height=height, texts=texts,
                source=item["source"], licence=licence_of(item["source"]), split=item["split"],
                digest=digest_of(item["path"]), meta={"sample_id": item["sample_id"]},
            )
        )  # fmt: skip
    return out, removed


def from_vqa(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str = "rsivqa",
    skip_bad: bool = False,
    batch_size: int = 256,
    overwrite: bool = False,
    runner: Runner = LOCAL,
    **reader_args,
) -> CuratedDataset:
    """Build a curated dataset of QA records from a VQA set.

    Args:
        root: the set's folder (its published layout).
        out: new dataset folder.
        name: registered VQA dataset (``rsivqa``, ``rsvqa_lr``, ``rsvqa_hr``).
        reader_args: passed to the reader (``image_dir``, ``image_splits``, ``files``).
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    items = vqa_items(root, name, **reader_args)
    fn = functools.partial(vqa_records, skip_bad=skip_bad)
    step = step_info(
        "from-vqa", root=root, name=name, **{k: str(v) for k, v in reader_args.items()}
    )
    step["input_count"] = len(items)
    with DatasetWriter(out, step=step, name=name, overwrite=overwrite) as w:
        run_batches(
            batched(items, batch_size), fn, w, total=len(items), desc="from-vqa", runner=runner
        )
    return open_dataset(out)
