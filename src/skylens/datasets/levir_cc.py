"""LEVIR-CC: 10,077 bi-temporal image pairs (256x256, 0.5 m) with five change captions each.

Liu, Zhao, Chen, et al., "Remote sensing image change captioning with dual-branch transformers:
a new method and a large scale dataset", IEEE TGRS 60, 2022. Published layout::

    LevirCCcaptions.json                      images[]: filepath, filename, split, sentences[].raw,
                                              changeflag (0 = no change, 1 = change)
    images/{train,val,test}/A/<filename>      earlier image (pre)
    images/{train,val,test}/B/<filename>      later image (post)

One sample per pair: ``{"id", "image_pre", "image_post", "captions", "label"}`` where ``label``
indexes ``classes = ["no change", "change"]`` (the ``changeflag``). Images are matched by stem in
their ``A``/``B`` folders whatever the extension.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import BenchmarkDataset, Sample, index_images, register_dataset
from skylens.errors import DatasetLayoutError

ANNOTATION_FILE = "LevirCCcaptions.json"


@register_dataset("levir-cc", "levircc")
class LEVIRCC(BenchmarkDataset):
    """LEVIR-CC change captioning (6,815 train / 1,333 val / 1,929 test pairs)."""

    name: ClassVar[str] = "levir_cc"
    task: ClassVar[str] = "change_captioning"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")
    citation: ClassVar[str] = (
        "Liu et al., Remote sensing image change captioning with dual-branch transformers: "
        "a new method and a large scale dataset, IEEE TGRS 2022"
    )
    classes: list[str] = ["no change", "change"]

    def _load(self) -> list[Sample]:
        path = self.root / ANNOTATION_FILE
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: not found (LEVIR-CC annotation file)")
        try:
            images = json.loads(path.read_text(encoding="utf-8"))["images"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetLayoutError(
                f"{path}: expected an object with an 'images' list ({exc})"
            ) from None
        indexes: dict[tuple[str, str], dict[str, Path]] = {}
        samples: list[Sample] = []
        for i, im in enumerate(images):
            try:
                filename = str(im["filename"])
                split = str(im["split"])
                folder = str(im.get("filepath") or split)
                captions = [str(s["raw"]).strip() for s in im["sentences"]]
                changed = int(im.get("changeflag", 1))
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetLayoutError(
                    f"{path}: images[{i}] lacks {exc} (expected filepath, filename, split, "
                    f"sentences[].raw, changeflag)"
                ) from None
            if self.split != "all" and split != self.split:
                continue
            stem = Path(filename).stem
            pair: dict[str, Path | None] = {}
            drop = False
            for key, sub in (("image_pre", "A"), ("image_post", "B")):
                where = self.root / "images" / folder / sub
                if (folder, sub) not in indexes:
                    indexes[(folder, sub)] = index_images(where)
                pair[key] = indexes[(folder, sub)].get(stem)
                if pair[key] is None and self._missing(f"{folder}/{sub}/{filename}", where):
                    drop = True
                    break
            if drop:
                continue
            samples.append(
                {
                    "id": stem,
                    "image_pre": pair["image_pre"],
                    "image_post": pair["image_post"],
                    "captions": captions,
                    "label": 1 if changed else 0,
                }
            )
        return samples
