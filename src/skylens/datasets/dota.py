"""DOTA: object detection in aerial images with oriented boxes (15-18 classes, Google Earth and more).

Xia, Bai, Ding, et al., "DOTA: A large-scale dataset for object detection in aerial images",
CVPR 2018. Published layout (``DOTA_devkit``): ``images/P0001.png`` and ``labelTxt/P0001.txt``
(``labelTxt-v1.0/`` in some copies), the text file optionally starting with ``imagesource:`` and
``gsd:`` lines, then one object a line: ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult``.

One sample per image: ``{"id": stem, "image": Path, "objects": [{"name", "bbox", "polygon",
"difficult"}]}``; ``bbox`` is the axis-aligned hull of the polygon. Malformed object lines are
counted in ``.malformed`` and skipped. There is no official split in the devkit sample: ``all``
is every image; ``train``/``val``/``test`` use the folder of that name when present
(``<root>/<split>/images``), else a seeded 20 % hash of the stem for ``test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    hash_fraction,
    index_images,
    register_dataset,
)
from skylens.errors import DatasetLayoutError

LABEL_DIRS = ("labelTxt", "labelTxt-v1.0", "labelTxt-v1.5", "labelTxt-v2.0")


def parse_dota_labels(path: Path) -> tuple[list[dict], dict[str, str], int]:
    """Objects, header facts (``imagesource``, ``gsd``) and the malformed-line count of a file."""
    objects: list[dict] = []
    header: dict[str, str] = {}
    malformed = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" in line and line.split(":", 1)[0] in ("imagesource", "gsd"):
            key, value = line.split(":", 1)
            header[key] = value.strip()
            continue
        parts = line.split()
        try:
            coords = [float(v) for v in parts[:8]]
            name = parts[8]
        except (ValueError, IndexError):
            malformed += 1
            continue
        xs, ys = coords[0::2], coords[1::2]
        objects.append(
            {
                "name": name,
                "polygon": coords,
                "bbox": (min(xs), min(ys), max(xs), max(ys)),
                "difficult": len(parts) > 9 and parts[9] == "1",
            }
        )
    return objects, header, malformed


@register_dataset("dota_v1", "dota-v1")
class DOTA(BenchmarkDataset):
    """DOTA oriented-box annotations (``labelTxt``) with their images."""

    name: ClassVar[str] = "dota"
    task: ClassVar[str] = "detection"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")
    citation: ClassVar[str] = (
        "Xia et al., DOTA: A large-scale dataset for object detection in aerial images, CVPR 2018"
    )

    def _load(self) -> list[Sample]:
        base = self.root / self.split if (self.root / self.split).is_dir() else self.root
        label_dir = next((base / d for d in LABEL_DIRS if (base / d).is_dir()), None)
        if label_dir is None:
            raise DatasetLayoutError(
                f"{base}: no DOTA label folder ({' or '.join(LABEL_DIRS)}); expected "
                f"<root>/images/P0001.png + <root>/labelTxt/P0001.txt"
            )
        images = index_images(base / "images" if (base / "images").is_dir() else base)
        self.malformed = 0
        self.header: dict[str, dict[str, str]] = {}
        samples: list[Sample] = []
        for txt in sorted(label_dir.glob("*.txt")):
            if base is self.root and self.split != "all":
                held_out = hash_fraction(txt.stem, 0) < 0.2
                if (self.split == "test") != held_out or self.split == "val":
                    continue
            objects, header, bad = parse_dota_labels(txt)
            self.malformed += bad
            self.header[txt.stem] = header
            path = images.get(txt.stem)
            if path is None and self._missing(txt.stem, base / "images"):
                continue
            samples.append({"id": txt.stem, "image": path, "objects": objects})
        self.classes = sorted({o["name"] for s in samples for o in s["objects"]})
        return samples
