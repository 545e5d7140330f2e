"""Write a tiny UCM-Captions copy in the published layout (seeded).

Layout: ``dataset.json`` (Karpathy: images[].filename "N.tif", split, sentences[].raw) and
``imgs/N.tif``. Images 1-5, 101-105 and 201-205 (the first five of the first three UC Merced
classes: agricultural, airplane, baseballdiamond); per class numbers 1-3 train, 4 val, 5 test.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir), image_ext=".jpg")``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ["farmland", "plane", "baseball field"]
NUMBERS = [c * 100 + i + 1 for c in range(3) for i in range(5)]


def split_of(number: int) -> str:
    i = (number - 1) % 100
    return "train" if i < 3 else ("val" if i == 3 else "test")


def make(root: Path, seed: int = 0, image_ext: str = ".tif", image_folder: str = "imgs") -> Path:
    rng = np.random.default_rng(seed)
    images, sentid = [], 0
    for imgid, n in enumerate(NUMBERS):
        word = WORDS[(n - 1) // 100]
        sentences = []
        for k in range(5):
            raw = f"There is a {word} number {n} variant {k} ."
            sentences.append(
                {"tokens": raw.split()[:-1], "raw": raw, "imgid": imgid, "sentid": sentid}
            )
            sentid += 1
        images.append(
            {
                "sentids": list(range(sentid - 5, sentid)),
                "imgid": imgid,
                "sentences": sentences,
                "split": split_of(n),
                "filename": f"{n}.tif",
            }
        )
        path = root / image_folder / f"{n}{image_ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    (root / "dataset.json").write_text(json.dumps({"images": images, "dataset": "ucm"}))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
