"""Write a tiny NWPU-Captions copy in the published layout (seeded).

Layout: ``dataset_nwpu.json``, an object keyed by category whose entries carry ``filename``,
``split``, ``imgid``, ``sentids`` and the five sentences as ``raw``, ``raw_1`` ... ``raw_4``;
images in ``NWPU_images/<category>/<category>_NNN.jpg``. Three categories x three images
(001 train, 002 val, 003 test).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = ["airplane", "storage_tank", "baseball_diamond"]
SPLITS = ["train", "val", "test"]


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    data: dict[str, list] = {}
    imgid = 0
    for cat in CATEGORIES:
        entries = []
        for i, split in enumerate(SPLITS, 1):
            name = f"{cat}_{i:03d}.jpg"
            entry = {
                "filename": name,
                "split": split,
                "imgid": imgid,
                "sentids": list(range(5 * imgid, 5 * imgid + 5)),
            }
            for k, key in enumerate(["raw", "raw_1", "raw_2", "raw_3", "raw_4"]):
                entry[key] = f"A {cat.replace('_', ' ')} scene {i} described {k} ."
            entries.append(entry)
            imgid += 1
            path = root / "NWPU_images" / cat / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        data[cat] = entries
    (root / "dataset_nwpu.json").write_text(json.dumps(data))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
