"""Helpers shared by tasks: render a whole image for models that look at it at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skylens.imagery import parse_bands, read_raster, require_valid_pixels, to_rgb

MAX_SIDE = 1024  # whole-image tasks look at a decimated view; the models see 224 px anyway


def load_scene_rgb(
    path: str | Path, *, bands: str | None = None, max_side: int = MAX_SIDE
) -> np.ndarray:
    """An RGB uint8 view of a whole raster, decimated so its longer side is at most ``max_side``.

    Uses overviews where the file has them (rasterio ``out_shape``), so a 20,000 px scene is never
    loaded whole. Errors name the file (``ImageReadError``, ``BandError``, and
    ``NoValidPixelsError`` for an image with no data: all NaN, nodata, masked or 0).
    """
    with read_raster(path) as raster:
        band_list = parse_bands(bands, raster.count, path, raster.band_names)
        scale = min(1.0, max_side / max(raster.width, raster.height))
        out = (max(1, round(raster.height * scale)), max(1, round(raster.width * scale)))
        arr = raster.read(bands=band_list, out_size=out)
        require_valid_pixels(arr, raster.valid_mask(out_size=out), path)
        lo, hi = raster.stretch_stats(band_list) if raster.dtype != "uint8" else (None, None)
        return to_rgb(arr, lo=lo, hi=hi, nodata=raster.nodata)
