"""Write a tiny LEVIR-CC copy in the published layout (seeded).

Layout: ``LevirCCcaptions.json`` (images[]: filepath, filename, imgid, sentences[].raw with the
published leading blank, split, changeflag, sentids) and ``images/{split}/{A,B}/<filename>``:
three train pairs, one val, two test; ``*_000002`` pairs are unchanged (changeflag 0).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PAIRS = {"train": 3, "val": 1, "test": 2}
NO_CHANGE = " the scene is the same as before "


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images, imgid = [], 0
    for split, n in PAIRS.items():
        for i in range(1, n + 1):
            name = f"{split}_{i:06d}.png"
            changed = 0 if i == 2 else 1
            raws = (
                [NO_CHANGE] * 5
                if not changed
                else [f" {k + 1} new buildings appear in the {split} scene " for k in range(5)]
            )
            sentences = [
                {"tokens": r.split(), "raw": r, "imgid": imgid, "sentid": 5 * imgid + k}
                for k, r in enumerate(raws)
            ]
            images.append(
                {
                    "filepath": split,
                    "filename": name,
                    "imgid": imgid,
                    "sentences": sentences,
                    "split": split,
                    "changeflag": changed,
                    "sentids": [5 * imgid + k for k in range(5)],
                }
            )
            imgid += 1
            for sub in ("A", "B"):
                path = root / "images" / split / sub / name
                path.parent.mkdir(parents=True, exist_ok=True)
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(path)
    (root / "LevirCCcaptions.json").write_text(json.dumps({"images": images}))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
