"""Write a tiny RSITMD copy in the published layout (seeded).

Layout: ``dataset_RSITMD.json`` (Karpathy layout) and ``images/<class>_<n>.tif``: five images,
three train, two test (RSITMD has no val split).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = {
    "boat_0.tif": "test",
    "boat_1.tif": "train",
    "farmland_3.tif": "train",
    "playground_7.tif": "train",
    "port_2.tif": "test",
}


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = []
    for imgid, (name, split) in enumerate(NAMES.items()):
        sentences = [
            {"raw": f"Two large ships moored near the gray {name} dock {k}.", "imgid": imgid}
            for k in range(5)
        ]
        images.append({"filename": name, "imgid": imgid, "split": split, "sentences": sentences})
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    (root / "dataset_RSITMD.json").write_text(json.dumps({"images": images}))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
