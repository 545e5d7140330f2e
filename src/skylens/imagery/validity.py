"""Whether an image holds any data at all, before a model is asked about it.

A raster whose pixels are all NaN, all nodata, all masked, or all 0 (a blank, black image)
carries no information, yet an encoder still maps it to some embedding and a classifier still
names a class for it with high confidence. Tasks call ``require_valid_pixels`` on what they read,
so such an image gets a clear error (HTTP 422) instead of a confident answer.
"""

from __future__ import annotations

import numpy as np

from skylens.errors import InputError


class NoValidPixelsError(InputError):
    """An image has no pixel that holds data (all NaN, nodata, masked or 0)."""

    http_status = 422


def has_valid_pixels(pixels: np.ndarray, valid: np.ndarray | None = None) -> bool:
    """True when some pixel holds data.

    Args:
        pixels: HxW or HxWxC array, any dtype.
        valid: HxW bool mask of pixels that hold data (``Raster.valid_mask``); None: all.

    A pixel holds data when the mask says so, every band is finite, and not every value of
    the image is 0 (an all-black image is blank).
    """
    arr = np.asarray(pixels)
    if arr.size == 0:
        return False
    data = arr.reshape(arr.shape[0], arr.shape[1], -1) if arr.ndim >= 2 else arr.reshape(1, -1, 1)
    ok = np.isfinite(data).all(-1) if np.issubdtype(data.dtype, np.floating) else None
    if valid is not None:
        mask = np.asarray(valid, bool).reshape(data.shape[:2])
        ok = mask if ok is None else ok & mask
    if ok is not None and not ok.any():
        return False
    values = data[ok] if ok is not None else data
    return bool(np.any(values != 0))


def require_valid_pixels(
    pixels: np.ndarray, valid: np.ndarray | None = None, name: object = "image"
) -> None:
    """Raise ``NoValidPixelsError`` naming ``name`` unless ``has_valid_pixels``."""
    if not has_valid_pixels(pixels, valid):
        raise NoValidPixelsError(
            f"{name}: no valid pixels (every pixel is NaN, nodata, masked or 0); nothing to analyse"
        )
