"""Write a tiny RSIVQA-UCM training set in the layout ``skylens train vqa`` reads (seeded).

Layout (as under ``../shared/data``): ``rsivqa_ucm/ucm_vqa.txt`` and ``rsivqa_ucm/ucm_res.txt``
with ``IMAGE:QUESTIONANSWER`` lines, and ``ucm_captions/dataset.json`` (Karpathy layout, giving
each image's split) with ``ucm_captions/images/N.jpg``.

Each of the 36 images is a noisy field of one colour (red, green or blue, in turn), and every
answer follows from the colour, so a head reading the test suite's colour encoder can learn it:
scene red -> "farmland", green -> "forest", blue -> "harbor"; trees present on green only;
cars counted "two" / "zero" / "five"; cars located "top left corner" / "i cannot see it" /
"center". Splits: images 1-24 train, 25-30 val, 31-36 test. One malformed line (empty object slot).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

N_IMAGES = 36
COLOURS = ("red", "green", "blue")
SCENE = {"red": "farmland", "green": "forest", "blue": "harbor"}
COUNT = {"red": "two", "green": "zero", "blue": "five"}
LOCATION = {"red": "top left corner", "green": "i cannot see it", "blue": "center"}


def colour_of(n: int) -> str:
    """The colour of image ``n`` (1-based)."""
    return COLOURS[(n - 1) % 3]


def split_of(n: int) -> str:
    return "train" if n <= 24 else "val" if n <= 30 else "test"


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = root / "ucm_captions" / "images"
    images.mkdir(parents=True, exist_ok=True)
    (root / "rsivqa_ucm").mkdir(parents=True, exist_ok=True)
    entries, vqa, res = [], [], []
    for n in range(1, N_IMAGES + 1):
        c = colour_of(n)
        arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
        arr[..., COLOURS.index(c)] = rng.integers(170, 256, (32, 32), dtype=np.uint8)
        Image.fromarray(arr).save(images / f"{n}.jpg", quality=95)
        entries.append({"filename": f"{n}.tif", "split": split_of(n), "sentences": []})
        vqa.append(f"{n}.tif:what is the theme of this picture?{SCENE[c]}")
        res += [
            f"{n}.tif:Does this picture contain trees?{'yes' if c == 'green' else 'no'}",
            f"{n}.tif:How many cars in the picture?{COUNT[c]}",
            f"{n}.tif:What is the location of the cars in this picture?{LOCATION[c]}",
        ]
    res.append("3.tif:How many  in the picture?zero")
    (root / "ucm_captions" / "dataset.json").write_text(json.dumps({"images": entries}))
    (root / "rsivqa_ucm" / "ucm_vqa.txt").write_text("\n".join(vqa) + "\n")
    (root / "rsivqa_ucm" / "ucm_res.txt").write_text("\n".join(res) + "\n")
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
