"""RSVQA-LR and RSVQA-HR: generated questions about Sentinel-2 and USGS aerial tiles.

Lobry, Marcos, Murray, Tuia, "RSVQA: Visual question answering for remote sensing data",
IEEE TGRS 58(12), 2020 (Zenodo records 6344334 and 6344367). Published layout::

    LR: LR_split_{train,val,test}_{questions,answers,images}.json   Images_LR/{id}.tif
    HR: USGS_split_{train,val,test,test_phili}_{...}.json          Data/{id}.tif

Each file holds one list (``{"questions": [...]}``, ``{"answers": [...]}``, ``{"images": [...]}``)
whose rows carry an ``id`` and an ``active`` flag; a question row names its image (``img_id``),
its family (``type``: ``presence``, ``count``, ``comp``, ``rural_urban`` for LR, ``area`` for HR)
and its answers (``answers_ids``). One sample per active question, with the first active answer
as published (HR ``area`` answers such as ``"120m2"`` are not binned here).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    Transform,
    index_images,
    register_dataset,
)
from skylens.errors import DatasetLayoutError


class RSVQA(BenchmarkDataset):
    """RSVQA (one sample per active question); see the module docstring for the layout."""

    task: ClassVar[str] = "vqa"
    citation: ClassVar[str] = (
        "Lobry et al., RSVQA: Visual question answering for remote sensing data, IEEE TGRS 2020"
    )
    #: File-name prefix of the annotation files.
    prefix: ClassVar[str] = ""
    #: Folder of the ``{id}.tif`` images.
    image_folder: ClassVar[str] = ""

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        image_dir: str | os.PathLike[str] | None = None,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; root, split, transforms, skip_missing, images_required as in
        :class:`BenchmarkDataset`.

        Args:
            image_dir: folder of the images (default ``<root>/Images_LR`` or ``<root>/Data``).
        """
        self.image_dir = Path(image_dir).expanduser() if image_dir is not None else None
        self.malformed = 0
        super().__init__(
            root, split, transforms, skip_missing=skip_missing, images_required=images_required
        )

    def _load(self) -> list[Sample]:
        wanted = [s for s in self.splits if s != "all"] if self.split == "all" else [self.split]
        if self.split == "all":
            wanted = [s for s in wanted if self._path(s, "questions").is_file()]
            if not wanted:
                raise DatasetLayoutError(
                    f"{self._path('test', 'questions')}: not found (no RSVQA split files under root)"
                )
        image_root = self.image_dir or self.root / self.image_folder
        if self.image_dir is not None and not image_root.is_dir():
            raise DatasetLayoutError(f"{image_root}: image folder not found")
        index = index_images(image_root)
        samples: list[Sample] = []
        for split in wanted:
            samples += self._load_split(split, index, image_root)
        return samples

    def _path(self, split: str, kind: str) -> Path:
        return self.root / f"{self.prefix}_split_{split}_{kind}.json"

    def _rows(self, split: str, kind: str) -> dict[int, dict]:
        path = self._path(split, kind)
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: not found ({self.name} {split} {kind} file)")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))[kind]
            return {int(r["id"]): r for r in rows if r.get("active", True)}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetLayoutError(
                f"{path}: expected {{'{kind}': [{{'id': ..., 'active': ...}}, ...]}} ({exc})"
            ) from None

    def _load_split(self, split: str, index: dict[str, Path], image_root: Path) -> list[Sample]:
        images = self._rows(split, "images")
        questions = self._rows(split, "questions")
        answers = self._rows(split, "answers")
        out: list[Sample] = []
        for qid, q in questions.items():
            try:
                img_id = int(q["img_id"])
                text = str(q["question"]).strip()
                qtype = str(q.get("type", ""))
                answer = next(
                    str(answers[a]["answer"]).strip() for a in q["answers_ids"] if a in answers
                )
            except (KeyError, TypeError, ValueError, StopIteration):
                self.malformed += 1
                continue
            if img_id not in images:
                continue  # the image is inactive: so is its question
            stem = str(img_id)
            path = index.get(stem)
            if path is None and self._missing(f"{stem}.tif", image_root):
                continue
            out.append(
                {
                    "id": f"{split}/{qid}",
                    "image": path,
                    "question": sys.intern(text),
                    "answer": sys.intern(answer),
                    "question_type": sys.intern(qtype),
                }
            )
        return out


@register_dataset("rsvqa-lr", "rsvqalr", "lrben")
class RSVQALR(RSVQA):
    """RSVQA-LR: 772 Sentinel-2 RGB tiles (256x256, 10 m) of the Netherlands, ~77k questions."""

    name: ClassVar[str] = "rsvqa_lr"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")
    prefix: ClassVar[str] = "LR"
    image_folder: ClassVar[str] = "Images_LR"


@register_dataset("rsvqa-hr", "rsvqahr", "hrben")
class RSVQAHR(RSVQA):
    """RSVQA-HR: 10,659 USGS aerial tiles (512x512, 15 cm); ``test_phili`` is test set 2."""

    name: ClassVar[str] = "rsvqa_hr"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "test_phili", "all")
    prefix: ClassVar[str] = "USGS"
    image_folder: ClassVar[str] = "Data"
