"""Write a tiny RSICD copy in both published layouts (seeded).

* ``dataset_rsicd.json`` (Karpathy layout) + ``RSICD_images/<class>_<n>.jpg``: six images,
  four train, one val, one test.
* ``rsicd_precomp/`` (AMFMN): ``train_caps.txt`` + ``train_filename.txt`` naming each train
  image once (five caption lines each), ``test_caps.txt`` + ``test_filename.txt`` naming the
  image on every caption line (as AMFMN's RSICD test files do); no val files.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = {
    "airport_1.jpg": "train",
    "airport_2.jpg": "train",
    "beach_1.jpg": "train",
    "beach_2.jpg": "train",
    "bridge_1.jpg": "val",
    "bridge_2.jpg": "test",
}


def captions_of(name: str) -> list[str]:
    return [f"the {name.split('_')[0]} {name} is seen here {k} ." for k in range(5)]


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = []
    for imgid, (name, split) in enumerate(NAMES.items()):
        sentences = [{"raw": c, "imgid": imgid} for c in captions_of(name)]
        images.append({"filename": name, "imgid": imgid, "split": split, "sentences": sentences})
        path = root / "RSICD_images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    (root / "dataset_rsicd.json").write_text(json.dumps({"images": images, "dataset": "rsicd"}))

    pre = root / "rsicd_precomp"
    pre.mkdir(parents=True, exist_ok=True)
    train = [n for n, s in NAMES.items() if s == "train"]
    test = [n for n, s in NAMES.items() if s == "test"]
    (pre / "train_filename.txt").write_text("".join(f"{n}\n" for n in train))
    (pre / "train_caps.txt").write_text("".join(f"{c}\n" for n in train for c in captions_of(n)))
    (pre / "test_filename.txt").write_text("".join(f"{n}\n" for n in test for _ in range(5)))
    (pre / "test_caps.txt").write_text("".join(f"{c}\n" for n in test for c in captions_of(n)))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
