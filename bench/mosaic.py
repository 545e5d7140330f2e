"""Seeded N x N mosaics of real scene tiles, written as georeferenced GeoTIFFs with their layout.

A benchmark scene for localization and change analysis (skylens issue 5): each cell of an
N x N grid is one real image from a class-folder dataset (``<root>/<class>/*.jpg|png|tif``),
by default UC Merced Land Use (Yang & Newsam 2010, 0.3 m USGS aerial RGB) restricted to the
UCM-Captions (Qu et al. 2016) *test* split, because the default model was trained on the
UCM-Captions train split. Caption image ``N.jpg`` is land-use image
``sorted(classes)[(N-1)//100]`` number ``(N-1) % 100`` (see ``../shared/data/README.md``).

The mosaic is written as a 3-band uint8 GeoTIFF in a UTM CRS (EPSG:32611 by default) with
0.3 m pixels; ``<name>.json`` beside it holds the true layout (class name of every cell, row by
row), the image used in each cell, the tile size and the seed. ``make_pair`` also writes an
"after" mosaic where ``k`` cells are replaced by images of other classes, and lists the
changed cells with their before -> after classes.

Usage::

    python bench/mosaic.py OUT_DIR --n 8 --k 6 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

UCM_IMAGES = Path("/work/shared/data/ucm_landuse/Images")
UCM_CAPTIONS = Path("/work/shared/data/ucm_captions/dataset.json")
PIXEL_M = 0.3  # UCM ground sampling distance, metres
CRS = "EPSG:32611"  # UTM zone 11N (southern California, where much of UCM was taken)
ORIGIN = (500_000.0, 3_800_000.0)  # upper-left corner in CRS metres (arbitrary, inside the zone)
SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


@dataclass
class Pool:
    """Images available for mosaics: class name -> sorted image paths."""

    root: Path
    images: dict[str, list[Path]]

    @property
    def classes(self) -> list[str]:
        return sorted(self.images)


def class_folder_pool(root: Path = UCM_IMAGES, *, split: str | None = "test") -> Pool:
    """Images of a class-folder dataset, optionally restricted to a UCM-Captions split.

    Args:
        root: folder with one sub-folder per class.
        split: 'train', 'val' or 'test' to keep only the UCM-Captions images of that split (the
            root must then be UCM land use), or None for every image.
    """
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images = {
        c: sorted(p for p in (root / c).iterdir() if p.suffix.lower() in SUFFIXES) for c in classes
    }
    if split is not None:
        data = json.loads(UCM_CAPTIONS.read_text())
        keep: dict[str, set[int]] = {c: set() for c in classes}
        for im in data["images"]:
            if im["split"] == split:
                n = int(Path(im["filename"]).stem) - 1
                keep[classes[n // 100]].add(n % 100)
        images = {
            c: [p for p in paths if int(re.sub(r"\D", "", p.stem) or -1) in keep[c]]
            for c, paths in images.items()
        }
    return Pool(root, {c: v for c, v in images.items() if v})


def _load_tile(path: Path, size: int) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if im.size != (size, size):  # 44 UCM images are a few pixels short of 256
        im = im.resize((size, size), Image.BICUBIC)
    return np.asarray(im, np.uint8)


def write_geotiff(path: Path, rgb: np.ndarray, *, pixel_m: float = PIXEL_M, crs: str = CRS) -> None:
    """Write an (H, W, 3) uint8 array as a tiled, deflate-compressed GeoTIFF."""
    h, w, _ = rgb.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": from_origin(ORIGIN[0], ORIGIN[1], pixel_m, pixel_m),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "photometric": "RGB",
    }
    if w * h * 3 > 3_500_000_000:
        profile["BIGTIFF"] = "YES"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))


def _render(cells: list[list[Path]], size: int) -> np.ndarray:
    n_r, n_c = len(cells), len(cells[0])
    out = np.zeros((n_r * size, n_c * size, 3), np.uint8)
    for i, row in enumerate(cells):
        for j, p in enumerate(row):
            out[i * size : (i + 1) * size, j * size : (j + 1) * size] = _load_tile(p, size)
    return out


def _draw(rng: random.Random, pool: Pool, cls: str, used: set[Path]) -> Path:
    fresh = [p for p in pool.images[cls] if p not in used]
    p = rng.choice(fresh or pool.images[cls])  # reuse an image only when the class runs out
    used.add(p)
    return p


def make_pair(
    out_dir: Path,
    name: str,
    *,
    pool: Pool,
    n: int = 8,
    k: int = 6,
    seed: int = 0,
    tile: int = 256,
    n_classes: int | None = None,
) -> dict:
    """Write ``<name>_before.tif``, ``<name>_after.tif`` and ``<name>.json`` (the truth).

    Args:
        out_dir: output folder (created).
        name: file stem.
        pool: images to draw from.
        n: cells per side.
        k: cells replaced in the after mosaic (by an image of another class), 0 for none.
        seed: random seed (layout, images, changed cells).
        tile: cell side in pixels (images are resized when not this size).
        n_classes: classes drawn for the layout (None: all the pool's classes).

    Returns:
        The truth dict written to ``<name>.json``.
    """
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = pool.classes
    if n_classes is not None:
        classes = sorted(rng.sample(classes, min(n_classes, len(classes))))
    layout = [[rng.choice(classes) for _ in range(n)] for _ in range(n)]
    used: set[Path] = set()
    before = [[_draw(rng, pool, c, used) for c in row] for row in layout]
    after_layout = [row[:] for row in layout]
    after = [row[:] for row in before]
    changed = []
    for flat in sorted(rng.sample(range(n * n), k)):
        i, j = divmod(flat, n)
        new = rng.choice([c for c in pool.classes if c != layout[i][j]])
        after_layout[i][j] = new
        after[i][j] = _draw(rng, pool, new, used)
        changed.append({"cell": [i, j], "before": layout[i][j], "after": new})
    write_geotiff(out_dir / f"{name}_before.tif", _render(before, tile))
    if k:
        write_geotiff(out_dir / f"{name}_after.tif", _render(after, tile))
    truth = {
        "name": name,
        "seed": seed,
        "n": n,
        "k": k,
        "tile_px": tile,
        "pixel_m": PIXEL_M,
        "crs": CRS,
        "source": str(pool.root),
        "layout": layout,
        "after_layout": after_layout if k else None,
        "changed": changed,
        "images_before": [[str(p) for p in row] for row in before],
        "images_after": [[str(p) for p in row] for row in after] if k else None,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--root", type=Path, default=UCM_IMAGES)
    ap.add_argument("--split", default="test", help="UCM-Captions split, or 'all'")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None)
    a = ap.parse_args()
    pool = class_folder_pool(a.root, split=None if a.split == "all" else a.split)
    name = a.name or f"mosaic_n{a.n}_k{a.k}_s{a.seed}"
    t = make_pair(a.out_dir, name, pool=pool, n=a.n, k=a.k, seed=a.seed, tile=a.tile)
    print(json.dumps({"name": name, "changed": t["changed"]}))


if __name__ == "__main__":
    main()
