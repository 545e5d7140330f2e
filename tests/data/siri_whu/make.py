"""Write a tiny SIRI-WHU (Google) copy in the published layout (seeded).

Layout: ``12class_tif/<class>/NNNN.tif``: the class folders ["agriculture", "idle_land", "water"],
five 32x32 images each.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_ROOT = "12class_tif"
CLASSES = ["agriculture", "idle_land", "water"]
PER_CLASS = 5


def file_name(cls: str, i: int) -> str:
    return f"{i + 1:04d}.tif"


def make(root: Path, seed: int = 0, per_class: int = PER_CLASS) -> Path:
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        for i in range(per_class):
            path = root / CLASS_ROOT / cls / file_name(cls, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
