"""Write a tiny COCO-boxes copy (seeded): ``images/N.jpg`` (32x32) and one ``instances.json``.

Four images, categories plane and storage-tank; image 3 has no annotation.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(1, 5):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.jpg"
        )
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32})
    anns.append({"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0})
    anns.append({"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 6, 6], "iscrowd": 0})
    anns.append({"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    anns.append({"id": 4, "image_id": 4, "category_id": 1, "bbox": [16, 16, 8, 8], "iscrowd": 0})
    cats = [{"id": 1, "name": "plane"}, {"id": 2, "name": "storage-tank"}]
    (root / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
