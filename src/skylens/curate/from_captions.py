"""``from-captions``: an image-caption set (Karpathy JSON, UCM-Captions, RSICD, precomp) -> records.

The annotations are read through the dataset registry's caption reader
(:class:`skylens.datasets.CaptionDataset`: Karpathy & Fei-Fei's ``dataset*.json`` layout used by
UCM-Captions, Sydney-Captions, RSICD and RSITMD, or AMFMN's ``*_precomp`` text files), so a
caption file in the wrong layout fails with the reader's error naming the file. Each image
becomes one record with its published sentences (kind ``caption``, quirks kept), the published
split, and, when the set knows the scene class (UCM-Captions), the label and its class prompt.
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
from skylens.datasets import CaptionDataset, dataset_class
from skylens.errors import InputError


def caption_items(
    root: str | os.PathLike[str],
    name: str | None = None,
    *,
    annotation_file: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
) -> list[dict]:
    """Items ``{"path", "captions", "label", "split", "source", "sample_id"}`` of a caption set.

    Images named by the annotations but missing on disk are skipped (text-only records teach an
    image-text model nothing); the count is in each item list's ``skipped`` note (manifest).
    """
    cls = dataset_class(name) if name else CaptionDataset
    if not issubclass(cls, CaptionDataset):
        raise InputError(f"'{name}' is a {cls.task} dataset, not an image-caption set")
    source = cls.name or Path(root).name
    items = []
    for split in ("train", "val", "test"):
        ds = cls(
            root,
            split=split,
            annotation_file=annotation_file,
            image_dir=image_dir,
            skip_missing=True,
        )
        for s in ds:
            label = ds.classes[s["label"]] if "label" in s and ds.classes else None
            items.append(
                {
                    "path": str(Path(s["image"]).resolve()),
                    "captions": list(s["captions"]),
                    "label": label,
                    "split": split,
                    "source": source,
                    "sample_id": s["id"],
                }
            )
    if not items:
        raise InputError(
            f"{root}: the {source} annotations were read but no image they name was found "
            f"(image_dir={image_dir or root})"
        )
    return items


def caption_records(items: list[dict], skip_bad: bool = False) -> tuple[list[Record], list[dict]]:
    """Batch function: items of :func:`caption_items` -> records (see ``pipeline.BatchFn``)."""
    out, removed = [], []
    for item in items:
        size = readable_size(item, skip_bad, removed)
        if size is None:
            continue
        width, height = size
        texts = [text("caption", c) for c in item["captions"] if c.strip()]
        if item["label"]:
            texts.append(text("class_prompt", vocabulary.class_prompt(item["label"])))
        out.append(
            make_record(
                image_path=item["path"],
                width=width,
                height=height,
                texts=texts,
                source=item["source"],
                licence=licence_of(item["source"]),
                label=item["label"],
                split=item["split"],
                digest=digest_of(item["path"]),
                meta={"sample_id": item["sample_id"]},
            )
        )
    return out, removed


def from_captions(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    annotation_file: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    batch_size: int = 256,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Build a curated dataset from an image-caption set.

    Args:
        root: the set's folder (annotations in a published layout).
        out: new dataset folder.
        name: registered caption dataset (``ucm_captions``, ``rsicd``, ``sydney_captions``,
            ``rsitmd``, ``nwpu_captions``); None reads any ``dataset*.json`` / precomp files.
        annotation_file: an explicit Karpathy-style JSON.
        image_dir: where the images are (default: under ``root``).
        skip_bad: log unreadable images as removed instead of failing.
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).

    Raises:
        DatasetLayoutError: the annotations are not in a known layout (names the file).
    """
    items = caption_items(root, name, annotation_file=annotation_file, image_dir=image_dir)
    fn = functools.partial(caption_records, skip_bad=skip_bad)
    step = step_info("from-captions", root=root, name=name, annotation_file=annotation_file)
    step["input_count"] = len(items)
    with DatasetWriter(out, step=step, name=name or Path(root).name, overwrite=overwrite) as w:
        run_batches(
            batched(items, batch_size), fn, w, total=len(items), desc="from-captions", runner=runner
        )
    return open_dataset(out)
