"""Write a tiny RSSCN7 copy in the published layout (seeded).

Layout: ``RSSCN7/<class>/<x>NNN.jpg``: the class folders ["aGrass", "dRiverLake", "fResident"],
five 32x32 images each.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/data: the shared writer
from class_folders import write_class_folders  # noqa: E402

CLASS_ROOT = "RSSCN7"
CLASSES = ["aGrass", "dRiverLake", "fResident"]
PER_CLASS = 5


def file_name(cls: str, i: int) -> str:
    return f"{cls[0]}{i + 1:03d}.jpg"


def make(root: Path, seed: int = 0, per_class: int = PER_CLASS) -> Path:
    return write_class_folders(root, CLASS_ROOT, CLASSES, file_name, seed=seed, per_class=per_class)


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
