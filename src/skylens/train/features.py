"""Frozen-tower features of augmented views, computed once and cached for head training.

The towers are frozen, so training the heads only needs their outputs. Each training image is
seen under the eight dihedral transforms (aerial imagery has no canonical "up") and a few random
resized crops (scale 0.5-1.0), which teaches the heads rotation and scale invariance without
touching the towers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from skylens.models.towers import ImageTower, preprocess


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the eight rotations/flips of an HxWxC array."""
    out = np.rot90(arr, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def random_crop(arr: np.ndarray, rng: np.random.Generator, scale=(0.5, 1.0)) -> np.ndarray:
    """A random square crop covering ``scale`` of the image area."""
    h, w = arr.shape[:2]
    side = int(round(np.sqrt(rng.uniform(*scale)) * min(h, w)))
    y = rng.integers(0, h - side + 1)
    x = rng.integers(0, w - side + 1)
    return dihedral(arr[y : y + side, x : x + side], int(rng.integers(0, 8)))


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def tower_features(
    tower: ImageTower,
    paths: Sequence[Path],
    out: Path,
    *,
    views: int = 1,
    crops: int = 0,
    seed: int = 0,
    batch_size: int = 64,
    desc: str = "features",
) -> dict[str, np.ndarray]:
    """Last-block activations and ImageNet logits of each image under its views, cached at ``out``.

    Each image is seen under ``views`` dihedral views and ``crops`` random crops. Returns
    ``blocks`` (n_images, views + crops, 320, 7, 7) float16, memory-mapped from ``out/blocks.npy``
    (about 30 KB a view), and ``logits`` (n_images, views + crops, 1000) float16.
    """
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done"
    per = views + crops
    if not done.is_file():
        rng = np.random.default_rng(seed)
        blocks = np.lib.format.open_memmap(
            out / "blocks.tmp.npy", "w+", np.float16, (len(paths), per, 320, 7, 7)
        )
        logits = np.zeros((len(paths), per, 1000), np.float16)
        pending: list[np.ndarray] = []
        slots: list[tuple[int, int]] = []

        def flush() -> None:
            b, lg = tower.run_blocks(preprocess(pending))
            for (i, j), bi, li in zip(slots, b, lg, strict=True):
                blocks[i, j] = bi
                logits[i, j] = li
            pending.clear()
            slots.clear()

        for i, path in enumerate(tqdm(paths, desc=desc, unit="img")):
            arr = load_rgb(path)
            for j in range(views):
                pending.append(dihedral(arr, j))
                slots.append((i, j))
            for j in range(crops):
                pending.append(random_crop(arr, rng))
                slots.append((i, views + j))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        blocks.flush()
        del blocks
        (out / "blocks.tmp.npy").rename(out / "blocks.npy")
        np.save(out / "logits.npy", logits)
        done.write_text("ok")
    return {
        "blocks": np.load(out / "blocks.npy", mmap_mode="r"),
        "logits": np.load(out / "logits.npy"),
    }
