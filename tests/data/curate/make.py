"""Tiny seeded inputs for the curate tests.

* ``scene/<class>/<class>_N.jpg``: a plain class tree (3 classes x 4 images, 48x48) whose
  images are smooth random fields (distinct perceptual hashes, like real scenes, unlike noise).
* ``captions/dataset.json`` + ``captions/images/N.jpg``: a Karpathy-layout caption set
  (6 images: 4 train, 1 val, 1 test).
* ``eval/eval_N.png``: 4 "evaluation" images (64x64), and ``pool/<class>/...``: a class tree of
  6 distinct training images plus planted copies of evaluation images: re-encoded JPEG
  (quality 60), resized to 48x48, cropped by 5 % a side, and one exact byte copy of a pool image.

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["forest", "beach", "Parking_Lot"]
PLANTED = {"copy_jpeg60": 0, "copy_resized": 1, "copy_cropped": 2}  # pool file -> eval image


def smooth_image(rng: np.random.Generator, side: int) -> Image.Image:
    """A smooth random RGB field: 6x6 random colours upsampled bicubically, plus mild noise."""
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC), dtype=np.float32)
    im += rng.normal(0, 4, im.shape)
    return Image.fromarray(np.clip(im, 0, 255).astype(np.uint8))


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        for i in range(4):
            p = root / "scene" / cls / f"{cls}_{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            smooth_image(rng, 48).save(p, quality=95)
    images = []
    for i in range(1, 7):
        p = root / "captions" / "images" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        smooth_image(rng, 48).save(p, quality=95)
        split = "train" if i <= 4 else ("val" if i == 5 else "test")
        sents = [
            {"raw": f"many green trees around building number {i} ."},
            {"raw": "a road crosses the dense forest ."},
        ]
        images.append({"filename": f"{i}.tif", "split": split, "sentences": sents})
    (root / "captions" / "dataset.json").write_text(json.dumps({"images": images}))
    evals = []
    for i in range(4):
        p = root / "eval" / f"eval_{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im = smooth_image(rng, 64)
        im.save(p)
        evals.append(im)
    for i in range(6):
        p = root / "pool" / CLASSES[i % 2] / f"train_{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        smooth_image(rng, 64).save(p, quality=95)
    pool = root / "pool" / "beach"
    evals[PLANTED["copy_jpeg60"]].save(pool / "copy_jpeg60.jpg", quality=60)
    evals[PLANTED["copy_resized"]].resize((48, 48), Image.BILINEAR).save(
        pool / "copy_resized.jpg", quality=95
    )
    evals[PLANTED["copy_cropped"]].crop((3, 3, 61, 61)).save(pool / "copy_cropped.jpg", quality=95)
    shutil.copyfile(
        root / "pool" / "forest" / "train_0.jpg", root / "pool" / "forest" / "zz_exact_copy.jpg"
    )
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
