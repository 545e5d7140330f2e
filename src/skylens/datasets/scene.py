"""Shared reader for scene-classification benchmarks stored as one folder per class.

Layout: ``<class root>/<class folder>/<image>``, where the class root is the dataset root or
one of a few published sub-folders (``Images/`` for UC Merced, ``2750/`` for EuroSAT, ...), or,
failing those, the first folder at most three levels down whose sub-folders hold images.

Classes are the class folders in sorted order (``label`` indexes them); ``classes`` holds their
readable names (``DenseResidential`` -> ``dense residential``, see
:func:`~skylens.datasets.base.readable_class_name`) and ``class_folders`` the names on disk.

These datasets publish no official split. ``train``/``test`` is a seeded, stratified split: in
each class, ``round(test_fraction * n)`` images (20 % by default, seed 0) chosen by a hash of the
seed, class and file name (:func:`~skylens.datasets.base.stratified_split`), so the split is the
same on every machine and does not depend on numpy's random generators. ``all`` is every image. Samples: ``{"id": "<class folder>/<stem>", "image": Path, "label": int}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    Transform,
    list_images,
    readable_class_name,
    stratified_split,
)
from skylens.errors import DatasetLayoutError


class SceneDataset(BenchmarkDataset):
    """Scene classification from class folders, with a seeded stratified train/test split."""

    task: ClassVar[str] = "classification"
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "all")
    #: Sub-folders of root that are the class root in published copies (root itself is tried first).
    class_root_hints: ClassVar[tuple[str, ...]] = ()
    #: Strip RSSCN7-style ordering letters (``aGrass``) from folder names.
    letter_prefix: ClassVar[bool] = False
    #: What the layout looks like, for error messages.
    expected_layout: ClassVar[str] = "<root>/<class>/<image>"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        test_fraction: float = 0.2,
        seed: int = 0,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; root, split, transforms, skip_missing, images_required as in
        :class:`BenchmarkDataset`.

        Args:
            test_fraction: share of each class in the ``test`` split.
            seed: seed of the split.
        """
        self.test_fraction = test_fraction
        self.seed = seed
        super().__init__(
            root, split, transforms, skip_missing=skip_missing, images_required=images_required
        )

    def _load(self) -> list[Sample]:
        self.class_root = self._find_class_root()
        folders = sorted(
            d.name
            for d in self.class_root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and list_images(d)
        )
        self.class_folders = folders
        self.classes = [readable_class_name(f, letter_prefix=self.letter_prefix) for f in folders]
        files = {f: list_images(self.class_root / f) for f in folders}
        wanted = self._split_filter(files)
        samples: list[Sample] = []
        for label, folder in enumerate(folders):
            for path in files[folder]:
                sample_id = f"{folder}/{path.stem}"
                if wanted is None or wanted.get(sample_id) == self.split:
                    samples.append({"id": sample_id, "image": path, "label": label})
        return samples

    def _split_filter(self, files: dict[str, list[Path]]) -> dict[str, str] | None:
        """id -> split of every image, or None when ``split == "all"``."""
        if self.split == "all":
            return None
        groups = {f: [f"{f}/{p.stem}" for p in paths] for f, paths in files.items()}
        return stratified_split(groups, self.test_fraction, self.seed)

    def _find_class_root(self) -> Path:
        for cand in (*(self.root / h for h in self.class_root_hints), self.root):
            if _has_class_folders(cand):
                return cand
        frontier = [self.root]
        for _ in range(3):
            nxt = []
            for folder in frontier:
                subs = sorted(
                    d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                )
                for d in subs:
                    if _has_class_folders(d):
                        return d
                nxt += subs
            frontier = nxt
        raise DatasetLayoutError(
            f"{self.root}: no class folders with images found; expected the {self.name} layout "
            f"{self.expected_layout}"
        )


def _has_class_folders(folder: Path) -> bool:
    """True when at least two sub-folders of ``folder`` hold images directly."""
    if not folder.is_dir():
        return False
    n = 0
    for d in folder.iterdir():
        if d.is_dir() and not d.name.startswith(".") and list_images(d):
            n += 1
            if n >= 2:
                return True
    return False
