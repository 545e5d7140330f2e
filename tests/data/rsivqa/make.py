"""Write a tiny RSIVQA (UCM subset) copy in the published layout (seeded).

Layout: ``ucm_vqa.txt`` (one scene question per image) and ``ucm_res.txt`` (presence, count and
location questions) with ``IMAGE:QUESTIONANSWER`` lines, and the images as ``images/N.tif``
(RSIVQA ships no images; the UCM subset uses UCM-Captions' numbering). Like the real
``ucm_res.txt`` it holds malformed lines: two questions whose object slot is empty, one line
without ``?``, one with an empty answer and one without ``:``.

Counts: 20 images, 20 scene lines, 6 x 5 result lines of which 2 malformed, 3 more malformed:
48 valid questions, 5 malformed.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

N_IMAGES = 20
N_VALID = 48
N_MALFORMED = 5


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for n in range(1, N_IMAGES + 1):
        arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{n}.tif")
    themes = ["farmland", "airplane", "harbor", "river"]
    vqa = [
        f"{n}.tif:what is the theme of this picture?{themes[(n - 1) // 5]}" for n in range(1, 21)
    ]
    res = []
    for n in range(1, 7):
        res.append(f"{n}.tif:What is the theme of this picture?{themes[(n - 1) // 5]}")
        res.append(f"{n}.tif:Does this picture contain an airplane?no")
        res.append(f"{n}.tif:Does this picture contain trees?yes")
        if n == 3:
            res.append(f"{n}.tif:How many  in the picture?zero")
            res.append(f"{n}.tif:What is the location of the  in this picture?i cannot see it")
        else:
            res.append(f"{n}.tif:How many trees in the picture?two")
            res.append(f"{n}.tif:What is the location of the trees in this picture?top left corner")
    res += [
        "7.tif:Does this picture contain trees",
        "8.tif:How many cars in the picture?",
        "a line without the image separator",
    ]
    (root / "ucm_vqa.txt").write_text("\n".join(vqa) + "\n")
    (root / "ucm_res.txt").write_text("\n".join(res) + "\n")
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
