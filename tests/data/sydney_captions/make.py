"""Write a tiny Sydney-Captions copy in the published layout (seeded).

Layout: ``dataset.json`` (Karpathy layout, filenames "N.tif") and ``imgs/N.tif``: six images,
1-4 train, 5 val, 6 test.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "test"}


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = []
    for imgid, (n, split) in enumerate(SPLITS.items()):
        sentences = [
            {"raw": f"A residential area {n} with houses arranged neatly {k} .", "imgid": imgid}
            for k in range(5)
        ]
        images.append(
            {"imgid": imgid, "sentences": sentences, "split": split, "filename": f"{n}.tif"}
        )
        path = root / "imgs" / f"{n}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    (root / "dataset.json").write_text(json.dumps({"images": images, "dataset": "sydney"}))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
