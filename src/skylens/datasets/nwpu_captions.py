"""NWPU-Captions: the 31,500 NWPU-RESISC45 images with five sentences each.

Cheng, Li, Yuan, et al., "NWPU-Captions dataset and MLCA-Net for remote sensing image
captioning", IEEE TGRS 60, 2022. Published layout: ``dataset_nwpu.json``, an object keyed by
scene category whose entries carry ``filename``, ``split`` and the five sentences as ``raw``,
``raw_1`` ... ``raw_4``; images in ``NWPU_images/<category>/<filename>`` (found by stem anywhere
under ``image_dir``, default root). Each sample also carries its category as ``label``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import Sample, readable_class_name, register_dataset
from skylens.datasets.captions import CaptionDataset, read_json_file
from skylens.errors import DatasetLayoutError

SENTENCE_KEYS = ("raw", "raw_1", "raw_2", "raw_3", "raw_4")


@register_dataset("nwpu-caption", "nwpucaptions")
class NWPUCaptions(CaptionDataset):
    """NWPU-Captions (31,500 images x 5 sentences, 45 categories). ``label``: category."""

    name: ClassVar[str] = "nwpu_captions"
    citation: ClassVar[str] = (
        "Cheng et al., NWPU-Captions dataset and MLCA-Net for remote sensing image captioning, "
        "IEEE TGRS 2022"
    )
    json_names: ClassVar[tuple[str, ...]] = ("dataset_nwpu.json",)

    def _read_annotations(self) -> list[tuple[str, list[str]]]:
        path = self.annotation_file or self.root / "dataset_nwpu.json"
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: not found (NWPU-Captions annotation file)")
        self.annotation_path = path
        data = read_json_file(path)
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise DatasetLayoutError(
                f"{path}: expected an object mapping each category to a list of images"
            )
        categories = sorted(data)
        self.classes = [readable_class_name(c) for c in categories]
        self._label_of: dict[str, int] = {}
        out = []
        for label, category in enumerate(categories):
            for i, entry in enumerate(data[category]):
                try:
                    filename = str(entry["filename"])
                    split = str(entry.get("split", ""))
                    captions = [str(entry[k]).strip() for k in SENTENCE_KEYS if k in entry]
                except (KeyError, TypeError) as exc:
                    raise DatasetLayoutError(
                        f"{path}: {category}[{i}] lacks {exc} (expected filename, split, raw...)"
                    ) from None
                if not captions:
                    raise DatasetLayoutError(f"{path}: {category}[{i}] has no 'raw' sentences")
                if self.split == "all" or split == self.split:
                    out.append((filename, captions))
                    self._label_of[Path(filename).stem] = label
        return out

    def _annotate(self, sample: Sample, filename: str) -> None:
        sample["label"] = self._label_of[Path(filename).stem]
