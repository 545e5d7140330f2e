"""``from-folders``: a scene-classification set (class folders) -> image-text records.

RS5M (Zhang et al., IEEE TGRS 2024) turns the labels of classification sets into captions with
templates; here each image gets ``captions_per_image`` sentences from the written class
descriptions of :mod:`skylens.curate.vocabulary` (kind ``caption``) and the plain class prompt
(kind ``class_prompt``).

The folder is read through the dataset registry: a registered scene dataset by name
(``nwpu_resisc45``, ``eurosat``, ``ucm_landuse``...) with its published layout and its seeded
train/test split, or any plain ``<class>/*.jpg`` tree (read by the same scene-folder reader).
Each record's ``split`` is the registry's (``test`` for the held-out 20 %).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from skylens.curate import vocabulary
from skylens.curate.images import digest_of, readable_size
from skylens.curate.pipeline import LOCAL, Runner, batched, run_batches, step_info
from skylens.curate.records import Record, make_record, text
from skylens.curate.sources import licence_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.datasets import SceneDataset, dataset_class
from skylens.errors import InputError


def folder_items(root: str | os.PathLike[str], name: str | None = None) -> list[dict]:
    """The images of a class-folder set as items ``{"path", "label", "split", "source"}``.

    Args:
        root: the dataset folder (a registered layout, or ``<class>/<image>``).
        name: a registered scene dataset name; None reads a plain class tree.

    Raises:
        DatasetLayoutError: no class folders with images under ``root`` (names it).
    """
    if name:
        cls = dataset_class(name)
        if not issubclass(cls, SceneDataset):
            raise InputError(f"'{name}' is a {cls.task} dataset, not a class-folder set")
    else:
        cls = SceneDataset
    root = Path(root).expanduser()
    every = cls(root, split="all")
    held_out = {s["id"] for s in cls(root, split="test")}
    source = cls.name or root.name
    return [
        {
            "path": str(Path(s["image"]).resolve()),
            "label": every.classes[s["label"]],
            "split": "test" if s["id"] in held_out else "train",
            "source": source,
            "sample_id": s["id"],
        }
        for s in every
    ]


def folder_records(
    items: list[dict], captions_per_image: int = 3, skip_bad: bool = False
) -> tuple[list[Record], list[dict]]:
    """Batch function: items of :func:`folder_items` -> records (see ``pipeline.BatchFn``)."""
    out, removed = [], []
    for item in items:
        path = item["path"]
        size = readable_size(item, skip_bad, removed)
        if size is None:
            continue
        width, height = size
        label, source = item["label"], item["source"]
        captions = vocabulary.class_captions(label, source, captions_per_image, key=path)
        out.append(
            make_record(
                image_path=path,
                width=width,
                height=height,
                texts=[text("caption", c) for c in captions]
                + [text("class_prompt", vocabulary.class_prompt(label, source))],
                source=source,
                licence=licence_of(source),
                label=label,
                split=item["split"],
                digest=digest_of(path),
                meta={"sample_id": item["sample_id"]},
            )
        )
    return out, removed


def from_folders(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    captions_per_image: int = 3,
    skip_bad: bool = False,
    batch_size: int = 256,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Build a curated dataset from a class-folder set.

    Args:
        root: dataset folder.
        out: new dataset folder (must not exist unless ``overwrite``).
        name: registered scene dataset name (``nwpu_resisc45``...), or None for a plain tree.
        captions_per_image: template captions per image (1..8).
        skip_bad: log unreadable images as removed instead of failing on the first.
        batch_size: records per batch.
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).

    Raises:
        DatasetLayoutError: no class folders under ``root``.
        ImageReadError: an unreadable image (unless ``skip_bad``), naming the file.
    """
    if not 1 <= captions_per_image <= 8:
        raise InputError(f"captions_per_image must be 1..8, got {captions_per_image}")
    items = folder_items(root, name)
    fn = functools.partial(folder_records, captions_per_image=captions_per_image, skip_bad=skip_bad)
    step = step_info("from-folders", root=root, name=name, captions_per_image=captions_per_image)
    step["input_count"] = len(items)
    with DatasetWriter(out, step=step, name=name or Path(root).name, overwrite=overwrite) as w:
        run_batches(
            batched(items, batch_size), fn, w, total=len(items), desc="from-folders", runner=runner
        )
    return open_dataset(out)
