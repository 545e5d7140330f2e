"""The multi-source training set of ``skylens-lite``, read through the dataset registry.

Every trainable part of the default model learns from the same list of items, built here from
the benchmark loaders (``skylens.datasets.get_dataset``) over ``../shared/data``:

* ``ucm``: UC Merced scenes with their UCM-Captions sentences (the Karpathy split: train /
  val / test; the test split is only ever measured);
* ``nwpu``: the NWPU-RESISC45 subset (45 classes; registry ``train`` split trains, its ``test``
  split is held-out validation);
* ``eurosat``: the EuroSAT RGB subset (5 classes; same split use);
* ``dota``: DOTA object boxes cropped with context into small scenes named by their class
  (written once to the cache, as files).

Each item carries a *concept* (``models/class_descriptions.py``) so that "storagetanks" (UCM)
and "storage_tank" (NWPU) are one class. Caption-only texts (RSICD, RSITMD train files, whose
file names start with the scene class) give extra sentences per concept
(:func:`concept_captions`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylens.datasets import get_dataset
from skylens.errors import InputError
from skylens.models.class_descriptions import canonical_class, readable

#: source name -> (registry name, folder under the data root)
SOURCES: dict[str, tuple[str, str]] = {
    "ucm": ("ucm_captions", "ucm_captions"),
    "nwpu": ("nwpu_resisc45", "nwpu_resisc45_subset"),
    "eurosat": ("eurosat", "eurosat_rgb_subset"),
    "dota": ("dota", "dota_samples"),
}
#: caption-only sets whose train file names start with the scene class (``airport_12.jpg``)
CAPTION_TEXT_SETS = ("rsicd", "rsitmd")


@dataclass
class TrainItem:
    """One image of the training set."""

    image: Path
    source: str  # key of SOURCES
    concept: str  # canonical scene concept (class_descriptions)
    role: str  # "train", "val" (held out, picks settings) or "test" (only measured)
    label_name: str = ""  # the class as the dataset names it (readable), for zero-shot scoring
    captions: list[str] = field(default_factory=list)


def concept_of(name: str) -> str:
    """The concept a dataset class name stands for (its readable name when unknown)."""
    return canonical_class(name) or readable(name)


def source_root(data_root: Path, source: str) -> Path | None:
    """Folder of ``source`` under ``data_root`` (or ``data_root`` itself when it is a
    UCM-Captions folder); None when absent."""
    folder = Path(data_root) / SOURCES[source][1]
    if folder.is_dir():
        return folder
    if source == "ucm" and (Path(data_root) / "dataset.json").is_file():
        return Path(data_root)
    return None


def available_sources(data_root: Path, sources: Sequence[str]) -> tuple[str, ...]:
    """The sources of ``sources`` present under ``data_root``."""
    return tuple(s for s in sources if source_root(data_root, s) is not None)


def scene_items(data_root: Path, source: str) -> list[TrainItem]:
    """Items of a scene or caption set: ``ucm``, ``nwpu`` or ``eurosat``."""
    name, _ = SOURCES[source]
    root = source_root(data_root, source)
    items: list[TrainItem] = []
    if source == "ucm":
        for split in ("train", "val", "test"):
            ds = get_dataset(name, root, split=split)
            items += [
                TrainItem(
                    s["image"],
                    source,
                    concept_of(ds.classes[s["label"]]),
                    split,
                    ds.classes[s["label"]],
                    list(s["captions"]),
                )
                for s in ds
            ]
        return items
    for split, role in (("train", "train"), ("test", "val")):
        ds = get_dataset(name, root, split=split)
        items += [
            TrainItem(
                s["image"], source, concept_of(ds.classes[s["label"]]), role, ds.classes[s["label"]]
            )
            for s in ds
        ]
    return items


def object_crop_box(
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    *,
    context: float = 2.5,
    min_side: int = 64,
) -> tuple[int, int, int, int]:
    """A square crop (pixels) around ``box`` holding ``context`` times its longer side, at
    least ``min_side`` and inside the image."""
    x0, y0, x1, y1 = box
    side = int(min(max(min_side, context * max(x1 - x0, y1 - y0)), width, height))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, cx - side / 2), width - side))
    top = int(min(max(0, cy - side / 2), height - side))
    return left, top, left + side, top + side


def dota_items(
    data_root: Path, cache: Path, *, context: float = 2.5, min_side: int = 64
) -> list[TrainItem]:
    """DOTA objects cropped with context (``object_crop_box``), written once under ``cache``;
    each crop is named by its object's class."""
    from PIL import Image

    ds = get_dataset(SOURCES["dota"][0], source_root(data_root, "dota"), split="all")
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for s in ds:
        image = None
        for n, obj in enumerate(s["objects"]):
            out = cache / f"{s['id']}_{n}.png"
            if not out.is_file():
                if image is None:
                    with Image.open(s["image"]) as im:
                        image = im.convert("RGB")
                image.crop(
                    object_crop_box(obj["bbox"], *image.size, context=context, min_side=min_side)
                ).save(out)
            name = obj["name"].replace("-", " ")
            items.append(TrainItem(out, "dota", concept_of(name), "train", name))
    return items


def training_items(data_root: Path, sources: Sequence[str], cache: Path) -> list[TrainItem]:
    """All items of the ``sources`` (keys of ``SOURCES``) present under ``data_root``, in a fixed
    order."""
    found = available_sources(data_root, sources)
    if not found:
        raise InputError(
            f"{data_root}: none of the training sources found ({', '.join(SOURCES[s][1] for s in sources)}); "
            "point --data at ../shared/data"
        )
    items: list[TrainItem] = []
    for source in found:
        if source == "dota":
            items += dota_items(data_root, cache / "dota-crops")
        else:
            items += scene_items(data_root, source)
    return items


def concept_captions(data_root: Path, *, limit: int = 200) -> dict[str, list[str]]:
    """Distinct train-split sentences of the caption-only sets, grouped by scene concept.

    At most ``limit`` sentences a concept (the most frequent first, then alphabetical), so no
    concept's text dominates. Sets or files that are missing are skipped.
    """
    by: dict[str, Counter] = {}
    for name in CAPTION_TEXT_SETS:
        folder = data_root / "captions_only" / name
        caps, files = folder / "train_caps.txt", folder / "train_filename.txt"
        if not (caps.is_file() and files.is_file()):
            continue
        sentences = caps.read_text(encoding="utf-8", errors="replace").splitlines()
        names = files.read_text(encoding="utf-8", errors="replace").splitlines()
        per = max(1, len(sentences) // max(1, len(names)))  # five sentences a file name
        for i, fname in enumerate(names):
            head = fname.split("_")[0]
            if head == fname or not head.isalpha():
                continue
            concept = canonical_class(head)
            if concept is None:
                continue
            for sent in sentences[i * per : (i + 1) * per]:
                if sent.strip():
                    by.setdefault(concept, Counter())[sent.strip()] += 1
    return {
        c: [s for s, _ in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]
        for c, cnt in by.items()
    }


def balanced_order(concepts: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` item indices drawn with probability 1 / (items of the same concept): every concept
    is seen about equally often, however many images it has."""
    counts = Counter(concepts)
    w = np.array([1.0 / counts[c] for c in concepts])
    return rng.choice(len(concepts), size=n, replace=True, p=w / w.sum())


def summary(items: Sequence[TrainItem]) -> dict:
    """Counts for the model card: images per source and role, concepts per source."""
    out: dict = {}
    for it in items:
        s = out.setdefault(it.source, {"images": Counter(), "concepts": set()})
        s["images"][it.role] += 1
        s["concepts"].add(it.concept)
    return {
        k: {"images": dict(v["images"]), "concepts": len(v["concepts"])} for k, v in out.items()
    }
