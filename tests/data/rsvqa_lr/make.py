"""Write a tiny RSVQA-LR copy in the published layout (seeded).

Layout: ``LR_split_{split}_{questions,answers,images}.json`` (each a single list under
``questions``/``answers``/``images`` whose rows carry ``id`` and ``active``) and the images
as ``Images_LR/{id}.tif``. Splits: {"train": [0, 1, 2, 3], "val": [4], "test": [5]} (image ids).
Each image has four questions, one per type in ["presence", "count", "comp", "rural_urban"]; in every split
the last question of the first image is inactive, and in train image 3 is inactive (so are its
questions). Valid questions per split: 4 * images - 1 (- 4 for train's inactive image).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/data: the shared writer
from rsvqa_layout import write_rsvqa  # noqa: E402

PREFIX = "LR"
IMAGE_FOLDER = "Images_LR"
SPLITS = {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
TYPES = ["presence", "count", "comp", "rural_urban"]


def expected_count(split: str) -> int:
    n = 4 * len(SPLITS[split]) - 1
    return n - 4 if split == "train" else n


def make(root: Path, seed: int = 0) -> Path:
    return write_rsvqa(root, PREFIX, IMAGE_FOLDER, SPLITS, TYPES, seed)


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
