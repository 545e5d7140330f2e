"""``from-detections``: boxes (DOTA labelTxt, COCO) -> count/presence captions, QA, region-text pairs.

Following RS-GPT4V (Xu et al., 2024) and SkyEyeGPT (Zhan et al., 2024), which derive
instruction and QA data from detection annotations, each annotated image yields:

* one image record with a count caption (``An aerial image with 236 ships and 12 harbours.``),
  a presence caption, and QA texts whose answers are the annotations' truth: ``How many ships
  are there?`` -> ``236``, ``Is there a plane?`` -> ``no`` (asked of classes of the set absent
  from the image), ``Where are the harbours?`` -> ``in the top left and left``;
* region records (kind ``caption``): a crop window around each object (padded by ``margin``,
  at least ``min_crop`` pixels a side), captioned with its class, at most ``max_crops`` per
  class an image, difficult objects skipped.

The annotations are read through the dataset registry (``dota``, ``coco_boxes``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from skylens.curate import facts
from skylens.curate.images import digest_of, readable_size
from skylens.curate.pipeline import LOCAL, Runner, batched, run_batches, step_info
from skylens.curate.records import Record, make_record, record_id, text
from skylens.curate.sources import licence_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.curate.vocabulary import object_words
from skylens.datasets import dataset_class
from skylens.errors import InputError


def _images_of(ds) -> dict[str, tuple[str, list[dict]]]:
    """image id -> (image path, objects), from per-image samples (``objects``) or per-object
    samples (``bbox`` + ``label``, one sample a box: grouped by image)."""
    out: dict[str, tuple[str, list[dict]]] = {}
    for s in ds:
        if "objects" in s:
            objs = [{"name": o["name"], "bbox": [float(v) for v in o["bbox"]], "difficult": bool(o["difficult"])}
                    for o in s["objects"]]  # fmt: skip
            out[s["id"]] = (str(Path(s["image"]).resolve()), objs)
        else:
            stem = Path(s["image"]).stem
            entry = out.setdefault(stem, (str(Path(s["image"]).resolve()), []))
            for box in s.get("bbox") or []:
                entry[1].append(
                    {
                        "name": ds.classes[s["label"]],
                        "bbox": [float(v) for v in box],
                        "difficult": False,
                    }
                )
    return out


def detection_items(root: str | os.PathLike[str], name: str = "dota", **kwargs) -> list[dict]:
    """Items ``{"path", "objects", "classes", "split", "source", "sample_id"}`` of a box set."""
    cls = dataset_class(name)
    if cls.task != "detection":
        raise InputError(f"'{name}' is a {cls.task} dataset, not a detection set")
    every = cls(root, split="all", **kwargs)
    images = _images_of(every)
    held_out: set[str] = set()
    if "test" in cls.splits:
        test = set(_images_of(cls(root, split="test", **kwargs)))
        held_out = (
            test if len(test) < len(images) else set()
        )  # a "test" that is everything is no split
    return [
        {
            "path": path,
            "objects": objects,
            "classes": list(every.classes),
            "split": "test" if sample_id in held_out else "train",
            "source": cls.name,
            "sample_id": sample_id,
        }
        for sample_id, (path, objects) in images.items()
    ]


def image_qa(objects: list[dict], classes: list[str], width: int, height: int) -> list[dict]:
    """Count, presence and location QA with the annotations' answers."""
    qa = []
    c = facts.counts(objects)
    for name in sorted(c):
        plural = object_words(name, 2)
        qa.append(text("qa", f"How many {plural} are there?", str(c[name])))
        qa.append(text("qa", f"Is there a {object_words(name)}?", "yes"))
        cells = facts.where(objects, name, width, height)
        verb = "is the" if c[name] == 1 else "are the"
        noun = object_words(name, c[name])
        qa.append(text("qa", f"Where {verb} {noun}?", facts.location_phrase(cells)))
    for name in sorted(set(classes) - set(c)):
        qa.append(text("qa", f"Is there a {object_words(name)}?", "no"))
    return qa


def region_windows(
    obj: dict, width: int, height: int, margin: float, min_crop: int
) -> list[int] | None:
    """Crop window ``[col, row, w, h]`` around a box, padded and clipped to the image."""
    x0, y0, x1, y1 = obj["bbox"]
    bw, bh = x1 - x0, y1 - y0
    side_w = max(bw * (1 + 2 * margin), min_crop)
    side_h = max(bh * (1 + 2 * margin), min_crop)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    c0 = int(max(0, min(width - side_w, cx - side_w / 2)))
    r0 = int(max(0, min(height - side_h, cy - side_h / 2)))
    w = int(min(side_w, width - c0))
    h = int(min(side_h, height - r0))
    return [c0, r0, w, h] if w > 0 and h > 0 else None


def detection_records(
    items: list[dict],
    max_crops: int = 20,
    margin: float = 0.2,
    min_crop: int = 32,
    skip_bad: bool = False,
) -> tuple[list[Record], list[dict]]:
    """Batch function: items of :func:`detection_items` -> image and region records."""
    out, removed = [], []
    for item in items:
        size = readable_size(item, skip_bad, removed)
        if size is None:
            continue
        width, height = size
        objects, source = item["objects"], item["source"]
        present = sorted(facts.counts(objects))
        texts = [text("caption", facts.count_caption(objects))]
        if present:
            names = facts.list_phrase([object_words(n, 2) for n in present])
            texts.append(text("caption", f"An aerial image showing {names}."))
        texts += image_qa(objects, item["classes"], width, height)
        common = dict(source=source, licence=licence_of(source), split=item["split"])
        out.append(
            make_record(
                image_path=item["path"], width=width, height=height, texts=texts,
                objects=objects, digest=digest_of(item["path"]),
                meta={"sample_id": item["sample_id"]}, **common,
            )
        )  # fmt: skip
        per_class: dict[str, int] = {}
        for i, obj in enumerate(objects):
            if obj["difficult"] or per_class.get(obj["name"], 0) >= max_crops:
                continue
            window = region_windows(obj, width, height, margin, min_crop)
            if window is None:
                continue
            per_class[obj["name"]] = per_class.get(obj["name"], 0) + 1
            word = object_words(obj["name"])
            article = "an" if word[:1] in "aeiou" else "a"
            out.append(
                make_record(
                    image_path=item["path"], image_window=window, width=window[2],
                    height=window[3], label=word,
                    texts=[text("caption", f"{article} {word} seen from above.".capitalize()),
                           text("class_prompt", f"a satellite image of {article} {word}.")],
                    digest=digest_of(item["path"], window),
                    id=record_id(source, item["path"], window, f"object {i}"),
                    meta={"sample_id": item["sample_id"], "region_of": i}, **common,
                )
            )  # fmt: skip
    return out, removed


def from_detections(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str = "dota",
    max_crops: int = 20,
    min_crop: int = 32,
    skip_bad: bool = False,
    batch_size: int = 16,
    overwrite: bool = False,
    runner: Runner = LOCAL,
    **reader_args,
) -> CuratedDataset:
    """Build a curated dataset (image records + region records) from a box-annotated set.

    Args:
        root: the set's folder (``dota``: images/ + labelTxt/; ``coco_boxes``: a COCO JSON).
        out: new dataset folder.
        name: registered detection dataset: ``dota`` or ``coco_boxes``.
        max_crops: region records per class and image, at most.
        min_crop: smallest crop side in pixels.
        reader_args: passed to the dataset reader (``annotation_file``, ``image_dir``).
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    items = detection_items(root, name, **reader_args)
    if not items:
        raise InputError(f"{root}: no annotated image found ({name} layout)")
    fn = functools.partial(
        detection_records, max_crops=max_crops, min_crop=min_crop, skip_bad=skip_bad
    )
    step = step_info("from-detections", root=root, name=name, max_crops=max_crops)
    step["input_count"] = len(items)
    with DatasetWriter(out, step=step, name=name, overwrite=overwrite) as w:
        run_batches(
            batched(items, batch_size),
            fn,
            w,
            total=len(items),
            desc="from-detections",
            runner=runner,
        )
    return open_dataset(out)
