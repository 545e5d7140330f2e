"""Write a tiny DOTA copy in the devkit layout (seeded).

Layout: ``images/P000N.png`` (32x32) and ``labelTxt/P000N.txt`` with the ``imagesource:`` and
``gsd:`` header lines, then ``x1 y1 ... x4 y4 class difficult`` lines; P0002 has one malformed
line. Classes: ship, harbor, small-vehicle.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = ["P0001", "P0002", "P0003", "P0004", "P0005", "P0006"]
#: per image: (class, x0, y0, x1, y1, difficult)
OBJECTS = {
    "P0001": [("ship", 2, 2, 8, 6, 0), ("ship", 20, 20, 28, 26, 0), ("harbor", 0, 24, 10, 31, 0)],
    "P0002": [("small-vehicle", 12, 12, 16, 15, 1)],
}


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        lines = ["imagesource:GoogleEarth", "gsd:0.5"]
        for cls, x0, y0, x1, y1, diff in OBJECTS.get(name, [("ship", 4, 4, 9, 9, 0)]):
            lines.append(f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1} {cls} {diff}")
        if name == "P0002":
            lines.append("1 2 3 not-a-number")
        (root / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
