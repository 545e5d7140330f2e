"""Render any band combination and bit depth to 8-bit RGB, for models and thumbnails.

Satellite data is rarely 8-bit: Landsat and Sentinel-2 deliver 12-16-bit integers or float
reflectance, where a linear map of the full range looks black. The usual remedy, and the default
here for non-uint8 data, is a per-band linear stretch between the 2nd and 98th percentiles
(the "2 % linear stretch" of GIS viewers such as QGIS). ``Raster.stretch_stats`` computes those
limits once per scene so every chip of it is stretched alike; pass them as ``lo``/``hi``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skylens.errors import InputError

STRETCH_MODES = ("auto", "pLO-pHI (e.g. p2-p98)", "minmax", "none")
DEFAULT_PERCENTILES = (2.0, 98.0)


def parse_stretch(stretch: str) -> str | tuple[float, float]:
    """'auto', 'minmax', 'none', or the (lo, hi) percentiles of a 'pLO-pHI' stretch.

    Raises:
        InputError: an unknown mode or percentiles outside 0 <= LO < HI <= 100.
    """
    text = str(stretch).strip().lower()
    if text in ("auto", "minmax", "none"):
        return text
    if text.startswith("p") and "-p" in text:
        try:
            lo_s, hi_s = text[1:].split("-p")
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise InputError(
                f"stretch '{stretch}' is not of the form pLO-pHI (e.g. p2-p98)"
            ) from None
        if not 0 <= lo < hi <= 100:
            raise InputError(f"stretch '{stretch}': need 0 <= LO < HI <= 100")
        return (lo, hi)
    raise InputError(f"unknown stretch '{stretch}': use one of {', '.join(STRETCH_MODES)}")


def stretch_percentiles(stretch: str, dtype: np.dtype | str) -> tuple[float, float] | None:
    """Percentiles a stretch mode needs for data of ``dtype``; None when it needs no statistics.

    'auto' leaves uint8 as-is and uses p2-p98 otherwise; 'minmax' is p0-p100.
    """
    mode = parse_stretch(stretch)
    if mode == "none" or (mode == "auto" and np.dtype(dtype) == np.uint8):
        return None
    if mode == "auto":
        return DEFAULT_PERCENTILES
    if mode == "minmax":
        return (0.0, 100.0)
    return mode


def _per_band(values: object, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, np.float64)).ravel()
    if arr.size not in (1, 3):
        raise InputError(f"{name} needs 1 or 3 values (one per rendered band), got {arr.size}")
    return arr


def to_rgb(
    array: np.ndarray,
    *,
    bands: Sequence[int] | None = None,
    stretch: str = "auto",
    lo: np.ndarray | Sequence[float] | float | None = None,
    hi: np.ndarray | Sequence[float] | float | None = None,
    nodata: float | None = None,
) -> np.ndarray:
    """An HxW or HxWxC array of any dtype -> HxWx3 uint8.

    Each band maps linearly from [lo, hi] to [0, 255] and is clipped. A band whose limits
    coincide (a constant scene) renders 128 at that value, 0 below and 255 above.

    Args:
        array: pixels, HxW or HxWxC (as ``Raster.read`` returns them).
        bands: 1-based bands of ``array`` to use as R, G, B (1 band: grey). Default: the first
            three, or grey for 1-band data.
        stretch: 'auto' (uint8 untouched, others p2-p98), 'pLO-pHI' percentiles of the valid
            pixels of ``array``, 'minmax', or 'none' (values clipped to 0..255).
        lo: lower limits, one per rendered band (or one for all), overriding the statistics
            of ``array``; use ``Raster.stretch_stats`` so all chips of a scene match.
        hi: upper limits, like ``lo``.
        nodata: pixels where every rendered band equals it are rendered black, as are pixels
            with a NaN/inf band.

    Raises:
        InputError: a bad shape, band, stretch mode or limit count.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] == 0:
        raise InputError(f"expected an HxW or HxWxC array, got shape {np.shape(array)}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if bands is not None:
        bands = [int(b) for b in bands]
        if len(bands) not in (1, 3) or any(not 1 <= b <= arr.shape[-1] for b in bands):
            raise InputError(
                f"bands {bands}: give 1 or 3 bands in 1..{arr.shape[-1]} to render as RGB"
            )
        arr = arr[..., [b - 1 for b in bands]]
    elif arr.shape[-1] >= 3:
        arr = arr[..., :3]
    elif arr.shape[-1] == 2:
        raise InputError("two bands cannot be rendered as RGB; choose 1 or 3 with bands=")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)

    floating = np.issubdtype(arr.dtype, np.floating)
    invalid = ~np.isfinite(arr).all(-1) if floating else np.zeros(arr.shape[:2], bool)
    if nodata is not None and not np.isnan(nodata):
        invalid |= (arr == nodata).all(-1)

    percentiles = stretch_percentiles(stretch, arr.dtype)
    if lo is None and hi is None and percentiles is None:
        out = np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 255).astype(np.uint8)
        out[invalid] = 0
        return out

    data = arr.astype(np.float64)
    if lo is None or hi is None:
        valid = data[~invalid]
        if valid.size == 0:
            return np.zeros((*arr.shape[:2], 3), np.uint8)
        p_lo, p_hi = percentiles or DEFAULT_PERCENTILES
        stats_lo, stats_hi = np.percentile(valid, [p_lo, p_hi], axis=0)
        lo_v = stats_lo if lo is None else _per_band(lo, "lo")
        hi_v = stats_hi if hi is None else _per_band(hi, "hi")
    else:
        lo_v, hi_v = _per_band(lo, "lo"), _per_band(hi, "hi")

    data = np.nan_to_num(data)
    span = hi_v - lo_v
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (data - lo_v) * (255.0 / np.where(span > 0, span, 1.0))
    flat = np.where(data < lo_v, 0.0, np.where(data > hi_v, 255.0, 128.0))
    out = np.where(span > 0, scaled, flat)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out[invalid] = 0
    return out


def png_bytes(image, *, optimize: bool = False) -> bytes:
    """PNG encoding (lossless) of a PIL image or an HxW / HxWx3 uint8 array: the one PNG encoder
    of skylens (thumbnails, reports, service pictures, model messages)."""
    import io

    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def png_data_url(image, *, optimize: bool = False) -> str:
    """``data:image/png;base64,...`` URL of a PIL image, a uint8 array, or PNG bytes."""
    import base64

    data = image if isinstance(image, bytes) else png_bytes(image, optimize=optimize)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
