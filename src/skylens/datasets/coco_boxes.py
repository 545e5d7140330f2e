"""COCO-format box annotations: any detection set published as a COCO ``instances`` JSON.

Lin et al., "Microsoft COCO: Common objects in context", ECCV 2014, defined the layout that
many remote-sensing sets (DIOR, xView conversions, iSAID, HRRSD exports) are released in:
``{"images": [{"id", "file_name", "width", "height"}], "annotations": [{"image_id", "bbox":
[x, y, w, h], "category_id", "iscrowd"}], "categories": [{"id", "name"}]}``.

Root holds the JSON (``annotations/instances_<split>.json``, ``instances_<split>.json`` or the
one ``*.json``; or pass ``annotation_file=``) and the images (found by stem under ``image_dir``,
default root). One sample per image with its ``objects`` (``bbox`` x1, y1, x2, y2 in pixels,
``polygon`` the four corners, ``difficult`` = ``iscrowd``). Splits: ``instances_<split>.json``
when present; with a single JSON, ``all`` is every image and ``test`` a seeded 20 % hash of the
image stem (``train`` the rest, ``val`` empty), as for DOTA.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    Transform,
    hash_fraction,
    index_images,
    register_dataset,
)
from skylens.errors import DatasetLayoutError


@register_dataset("coco", "coco-boxes")
class COCOBoxes(BenchmarkDataset):
    """Axis-aligned boxes from a COCO ``instances`` JSON."""

    name: ClassVar[str] = "coco_boxes"
    task: ClassVar[str] = "detection"
    citation: ClassVar[str] = "Lin et al., Microsoft COCO: Common objects in context, ECCV 2014"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        transforms: Transform | None = None,
        *,
        annotation_file: str | os.PathLike[str] | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; ``annotation_file`` and ``image_dir`` override the search."""
        self.annotation_file = Path(annotation_file) if annotation_file else None
        self.image_dir = Path(image_dir) if image_dir else None
        super().__init__(
            root, split, transforms, skip_missing=skip_missing, images_required=images_required
        )

    def _find_json(self) -> Path:
        self.hash_split = False
        if self.annotation_file is not None:
            self.hash_split = self.split != "all"
            return self.annotation_file
        for cand in (
            self.root / "annotations" / f"instances_{self.split}.json",
            self.root / f"instances_{self.split}.json",
        ):
            if cand.is_file():
                return cand
        found = sorted(self.root.glob("*.json")) + sorted(self.root.glob("annotations/*.json"))
        if len(found) == 1:
            self.hash_split = self.split != "all"
            return found[0]
        raise DatasetLayoutError(
            f"{self.root}: expected one COCO instances JSON (annotations/instances_{self.split}.json), "
            f"found {len(found)}; pass annotation_file="
        )

    def _load(self) -> list[Sample]:
        path = self._find_json()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
            anns = data["annotations"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetLayoutError(
                f"{path}: not a COCO instances JSON (images, annotations, categories): {exc}"
            ) from None
        objects: dict[int, list[dict]] = {i: [] for i in images}
        for i, a in enumerate(anns):
            try:
                x, y, w, h = (float(v) for v in a["bbox"])
                name = cats[int(a["category_id"])]
                image_id = int(a["image_id"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetLayoutError(f"{path}: annotations[{i}] is malformed ({exc})") from None
            objects.setdefault(image_id, []).append(
                {
                    "name": name,
                    "bbox": (x, y, x + w, y + h),
                    "polygon": [x, y, x + w, y, x + w, y + h, x, y + h],
                    "difficult": bool(a.get("iscrowd", 0)),
                }
            )
        index = index_images(self.image_dir or self.root)
        samples: list[Sample] = []
        for image_id, file_name in sorted(images.items()):
            stem = Path(file_name).stem
            if self.hash_split and (
                self.split == "val" or (hash_fraction(stem, 0) < 0.2) != (self.split == "test")
            ):
                continue
            img = index.get(stem)
            if img is None and self._missing(file_name, self.image_dir or self.root):
                continue
            samples.append({"id": stem, "image": img, "objects": objects.get(image_id, [])})
        self.classes = sorted(set(cats.values()))
        return samples
