"""Shared reader for image-caption benchmarks in their two published annotation layouts.

* **Karpathy JSON** (``dataset*.json``), the layout of Karpathy & Fei-Fei (CVPR 2015) adopted by
  UCM-Captions, Sydney-Captions, RSICD and RSITMD: ``{"images": [{"filename": "1.tif",
  "split": "train", "sentences": [{"raw": "..."}, ...]}, ...]}``.
* **AMFMN precomp** (Yuan et al., IEEE TGRS 2022, ``data/*_precomp``): ``{split}_caps.txt`` with
  one caption a line and ``{split}_filename.txt`` naming the image, either once per image (five
  caption lines each) or once per caption line.

One sample per image: ``{"id": stem, "image": Path, "captions": [...]}``. Images are found by
stem anywhere under ``image_dir`` (default: the root), whatever their extension.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    Transform,
    index_images,
)
from skylens.errors import DatasetLayoutError, InputError

CAPTION_SPLITS = ("train", "val", "test", "all")


class CaptionDataset(BenchmarkDataset):
    """Image-caption benchmark (retrieval and captioning) in the Karpathy or precomp layout.

    Subclasses name their annotation files; see the module docstring for the layouts.
    """

    task: ClassVar[str] = "captioning"
    splits: ClassVar[tuple[str, ...]] = CAPTION_SPLITS
    #: Karpathy JSON names to look for under root, in order (then any ``dataset*.json``).
    json_names: ClassVar[tuple[str, ...]] = ()
    #: Sub-folders of root that may hold the AMFMN precomp files (root itself is tried first).
    precomp_dirs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        image_dir: str | os.PathLike[str] | None = None,
        annotation_file: str | os.PathLike[str] | None = None,
        layout: str = "auto",
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; root, split, transforms, skip_missing, images_required as in
        :class:`BenchmarkDataset`.

        Args:
            image_dir: folder searched (recursively) for the images; default: root.
            annotation_file: an explicit Karpathy-style JSON, overriding the search.
            layout: ``auto`` (the JSON when present, else precomp), ``json`` or ``precomp``.
        """
        if layout not in ("auto", "json", "precomp"):
            raise InputError(f"layout must be auto, json or precomp, not '{layout}'")
        self.layout = layout
        self.image_dir = Path(image_dir).expanduser() if image_dir is not None else None
        self.annotation_file = Path(annotation_file) if annotation_file is not None else None
        super().__init__(
            root,
            split,
            transforms,
            skip_missing=skip_missing,
            images_required=images_required,
        )

    # -- annotations ---------------------------------------------------------------------------
    def _load(self) -> list[Sample]:
        records = self._read_annotations()
        image_root = self.image_dir or self.root
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise DatasetLayoutError(f"{self.image_dir}: image folder not found")
        index = index_images(image_root)
        samples: list[Sample] = []
        for filename, captions in records:
            stem = Path(filename).stem
            path = index.get(stem)
            if path is None and self._missing(filename, image_root):
                continue
            sample: Sample = {"id": stem, "image": path, "captions": captions}
            self._annotate(sample, filename)
            samples.append(sample)
        return samples

    def _annotate(self, sample: Sample, filename: str) -> None:
        """Hook: add dataset-specific keys (e.g. a scene ``label``)."""

    def _read_annotations(self) -> list[tuple[str, list[str]]]:
        """(image file name, captions) of the requested split, in annotation order."""
        json_path = self._find_json() if self.layout in ("auto", "json") else None
        if json_path is not None:
            self.annotation_path = json_path
            return self._read_json(json_path)
        if self.layout == "json":
            raise DatasetLayoutError(
                f"{self.root}: no Karpathy-style caption JSON found "
                f"(expected {self._expected_json()})"
            )
        precomp = self._find_precomp()
        if precomp is None:
            raise DatasetLayoutError(
                f"{self.root}: no {self.name} annotations found: expected {self._expected_json()} "
                f"(Karpathy layout) or {{split}}_caps.txt + {{split}}_filename.txt "
                f"(AMFMN precomp layout)"
            )
        self.annotation_path = precomp
        return self._read_precomp(precomp)

    def _expected_json(self) -> str:
        return " or ".join(self.json_names) if self.json_names else "dataset*.json"

    def _find_json(self) -> Path | None:
        if self.annotation_file is not None:
            if not self.annotation_file.is_file():
                raise DatasetLayoutError(f"{self.annotation_file}: annotation file not found")
            return self.annotation_file
        for name in self.json_names:
            if (self.root / name).is_file():
                return self.root / name
        found = sorted(p for p in self.root.glob("dataset*.json") if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise DatasetLayoutError(
                f"{self.root}: several caption JSON files ({names}); pass annotation_file= "
                f"to choose one"
            )
        return None

    def _read_json(self, path: Path) -> list[tuple[str, list[str]]]:
        data = read_json_file(path)
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise DatasetLayoutError(f"{path}: expected a JSON object with an 'images' list")
        out = []
        for i, im in enumerate(images):
            try:
                filename = str(im["filename"])
                split = str(im.get("split", ""))
                sentences = [str(s["raw"]).strip() for s in im["sentences"]]
            except (KeyError, TypeError) as exc:
                raise DatasetLayoutError(
                    f"{path}: images[{i}] lacks {exc} (expected filename, split, sentences[].raw)"
                ) from None
            if self.split == "all" or split == self.split:
                out.append((filename, sentences))
        return out

    def _find_precomp(self) -> Path | None:
        for folder in (self.root, *(self.root / d for d in self.precomp_dirs)):
            if any((folder / f"{s}_caps.txt").is_file() for s in ("train", "val", "test")):
                return folder
        return None

    def _read_precomp(self, folder: Path) -> list[tuple[str, list[str]]]:
        present = [s for s in ("train", "val", "test") if (folder / f"{s}_caps.txt").is_file()]
        wanted = present if self.split == "all" else [self.split]
        out: list[tuple[str, list[str]]] = []
        for split in wanted:
            caps_path = folder / f"{split}_caps.txt"
            names_path = folder / f"{split}_filename.txt"
            for p in (caps_path, names_path):
                if not p.is_file():
                    raise DatasetLayoutError(
                        f"{p}: not found (this copy has the splits {', '.join(present)})"
                    )
            out += group_precomp(_read_lines(caps_path), _read_lines(names_path), caps_path)
        return out


def group_precomp(
    captions: Sequence[str], filenames: Sequence[str], where: Path | str = "precomp files"
) -> list[tuple[str, list[str]]]:
    """Pair AMFMN ``*_caps.txt`` lines with ``*_filename.txt`` lines.

    The filename file names each image either once (then every image owns
    ``len(captions) // len(filenames)`` consecutive caption lines) or once per caption line.
    """
    if not filenames:
        return []
    if len(filenames) == len(captions):
        grouped: dict[str, list[str]] = {}
        for name, cap in zip(filenames, captions, strict=True):
            grouped.setdefault(name, []).append(cap)
        return list(grouped.items())
    per, rest = divmod(len(captions), len(filenames))
    if rest or per == 0:
        raise DatasetLayoutError(
            f"{where}: {len(captions)} caption lines do not fit {len(filenames)} file names "
            f"(expected one name per caption or the same number of captions per name)"
        )
    return [(name, list(captions[i * per : (i + 1) * per])) for i, name in enumerate(filenames)]


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_json_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetLayoutError(f"{path}: not valid JSON ({exc})") from None
