"""Render any band combination and bit depth to 8-bit RGB for models and thumbnails."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skylens.errors import InputError


def _parse_stretch(stretch: str) -> tuple[float, float] | str:
    if stretch in ("none", "minmax", "auto"):
        return stretch
    if stretch.startswith("p") and "-p" in stretch:
        try:
            lo, hi = stretch[1:].split("-p")
            lo_f, hi_f = float(lo), float(hi)
        except ValueError:
            raise InputError(
                f"stretch '{stretch}' is not of the form pLO-pHI (e.g. p2-p98)"
            ) from None
        if not 0 <= lo_f < hi_f <= 100:
            raise InputError(f"stretch '{stretch}': need 0 <= LO < HI <= 100")
        return (lo_f, hi_f)
    raise InputError(f"unknown stretch '{stretch}': use auto, p2-p98 (any pLO-pHI), minmax or none")


def to_rgb(
    array: np.ndarray,
    *,
    bands: Sequence[int] | None = None,
    stretch: str = "auto",
    lo: np.ndarray | Sequence[float] | None = None,
    hi: np.ndarray | Sequence[float] | None = None,
    nodata: float | None = None,
) -> np.ndarray:
    """HxWxC array of any dtype -> HxWx3 uint8.

    Args:
        array: pixels, HxW or HxWxC.
        bands: 1-based bands of ``array`` to use as R, G, B (default: first three, or grey).
        stretch: ``auto`` (uint8 as-is, others p2-p98), ``pLO-pHI``, ``minmax`` or ``none``.
        lo, hi: per-band stretch limits that override statistics of ``array`` (use
            ``Raster.stretch_stats`` so all chips of a scene are stretched alike).
        nodata: value rendered black, like NaN.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise InputError(f"expected an HxW or HxWxC array, got shape {arr.shape}")
    if bands is not None:
        if any(not 1 <= b <= arr.shape[-1] for b in bands):
            raise InputError(f"bands {list(bands)} out of range for {arr.shape[-1]} band(s)")
        arr = arr[..., [b - 1 for b in bands]]
    elif arr.shape[-1] >= 3:
        arr = arr[..., :3]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 2:
        raise InputError("two bands cannot be rendered as RGB; choose 1 or 3 with bands=")
    invalid = (
        ~np.isfinite(arr).all(-1)
        if np.issubdtype(arr.dtype, np.floating)
        else np.zeros(arr.shape[:2], bool)
    )
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        invalid |= (arr == nodata).all(-1)
    mode = _parse_stretch(stretch)
    if lo is None and hi is None and (mode == "none" or (mode == "auto" and arr.dtype == np.uint8)):
        out = np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 255).astype(np.uint8)
        out[invalid] = 0
        return out
    data = arr.astype(np.float32)
    if lo is None or hi is None:
        valid = data[~invalid]
        if valid.size == 0:
            return np.zeros((*arr.shape[:2], 3), np.uint8)
        if mode == "minmax":
            lo_v, hi_v = valid.min(0), valid.max(0)
        else:
            p_lo, p_hi = (2.0, 98.0) if mode in ("auto", "none") else mode
            lo_v, hi_v = np.percentile(valid, p_lo, axis=0), np.percentile(valid, p_hi, axis=0)
    else:
        lo_v, hi_v = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        if bands is None and len(lo_v) == 1:
            lo_v, hi_v = np.repeat(lo_v, 3), np.repeat(hi_v, 3)
    scale = 255.0 / np.maximum(hi_v - lo_v, 1e-12)
    out = np.clip((np.nan_to_num(data) - lo_v) * scale, 0, 255).astype(np.uint8)
    out[invalid] = 0
    return out
