"""UC Merced Land Use: 2,100 aerial RGB images (256x256, 0.3 m, USGS) in 21 classes of 100.

Yang & Newsam, "Bag-of-visual-words and spatial extensions for land-use classification",
ACM SIGSPATIAL GIS 2010. Published layout: ``UCMerced_LandUse/Images/<class>/<class>NN.tif``
(class folders are run-together lower-case names such as ``baseballdiamond``; ``classes`` holds
them as words: ``baseball diamond``).

Splits: the seeded stratified ``train``/``test`` of :mod:`skylens.datasets.scene`, ``all``, and
the split induced by UCM-Captions, ``captions-train``/``captions-val``/``captions-test``
(1680/210/210): caption image ``N`` is land-use image ``(N-1) % 100`` of class
``UCM_CLASS_FOLDERS[(N-1) // 100]``, so a model trained on UCM-Captions ``train`` can be tested
on land-use classification of images it never saw. Those splits read UCM-Captions'
``dataset.json`` from ``captions_json`` (default: ``<root>/dataset.json`` or the sibling folder
``<root>/../ucm_captions/dataset.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import Transform, register_dataset
from skylens.datasets.scene import SceneDataset
from skylens.datasets.ucm_captions import (
    UCM_CLASS_FOLDERS,
    UCM_IMAGES_PER_CLASS,
    ucm_caption_number,
)
from skylens.errors import DatasetLayoutError

CAPTION_SPLITS = ("captions-train", "captions-val", "captions-test")


@register_dataset("ucm", "ucmerced", "uc_merced", "ucm-land-use", "ucmerced_landuse")
class UCMLandUse(SceneDataset):
    """UC Merced Land Use (21 classes x 100 images)."""

    name: ClassVar[str] = "ucm_landuse"
    citation: ClassVar[str] = (
        "Yang and Newsam, Bag-of-visual-words and spatial extensions for land-use "
        "classification, ACM SIGSPATIAL 2010"
    )
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "all", *CAPTION_SPLITS)
    class_root_hints: ClassVar[tuple[str, ...]] = ("Images", "UCMerced_LandUse/Images")
    expected_layout: ClassVar[str] = "<root>/Images/<class>/<class>NN.tif"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        captions_json: str | os.PathLike[str] | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; root, split, transforms, skip_missing, images_required as in
        :class:`SceneDataset`.

        Args:
            captions_json: UCM-Captions ``dataset.json`` defining the ``captions-*`` splits.
        """
        self.captions_json = Path(captions_json).expanduser() if captions_json else None
        super().__init__(
            root,
            split,
            transforms,
            test_fraction=test_fraction,
            seed=seed,
            skip_missing=skip_missing,
            images_required=images_required,
        )

    def _split_filter(self, files: dict[str, list[Path]]) -> dict[str, str] | None:
        if self.split not in CAPTION_SPLITS:
            return super()._split_filter(files)
        by_number = ucm_captions_splits(self._captions_json())
        out: dict[str, str] = {}
        for folder, paths in files.items():
            if folder not in UCM_CLASS_FOLDERS:
                continue
            for p in paths:
                rest = p.stem[len(folder) :] if p.stem.startswith(folder) else ""
                if rest.isdigit() and int(rest) < UCM_IMAGES_PER_CLASS:
                    split = by_number.get(ucm_caption_number(folder, int(rest)))
                    if split is not None:
                        out[f"{folder}/{p.stem}"] = f"captions-{split}"
        return out

    def _captions_json(self) -> Path:
        cands = (
            [self.captions_json]
            if self.captions_json
            else [self.root / "dataset.json", self.root.parent / "ucm_captions" / "dataset.json"]
        )
        for c in cands:
            if c.is_file():
                return c
        raise DatasetLayoutError(
            f"{cands[0]}: UCM-Captions dataset.json not found; split '{self.split}' needs it "
            f"(pass captions_json=path/to/ucm_captions/dataset.json)"
        )


def ucm_captions_splits(path: Path) -> dict[int, str]:
    """Caption image number -> split (``train``/``val``/``test``) from UCM-Captions' JSON."""
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {
            int(Path(im["filename"]).stem): str(im["split"])
            for im in images
            if Path(im["filename"]).stem.isdigit()
        }
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetLayoutError(
            f"{path}: not a UCM-Captions dataset.json (images[].filename/split): {exc}"
        ) from None
