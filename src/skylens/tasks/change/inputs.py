"""Inputs of a change comparison: the encoder, argument checks, and AFTER placed on BEFORE's grid.

AFTER is warped onto BEFORE's pixel grid (``rasterio.vrt.WarpedVRT``, bilinear) when their CRS,
resolution or extent differ, so the two dates compare the same ground; plain images must match
in size. ``read_scene_rgb`` renders a whole (aligned) raster to RGB with its valid-pixel mask.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from skylens.errors import BandError, GeoError, InputError
from skylens.imagery import Raster, parse_bands, to_rgb
from skylens.models.base import ImageTextEncoder


def read_scene_rgb(raster: Raster, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A whole raster rendered to RGB uint8 (scene-wide stretch) and its valid-pixel mask.

    Args:
        raster: an open raster (or a warped view of one).
        bands: 1-based bands shown as R, G, B.

    Returns:
        (HxWx3 uint8 RGB with invalid pixels black, HxW bool valid mask).
    """
    arr = raster.read(bands=bands)
    lo = hi = None
    if raster.dtype != "uint8":
        lo, hi = raster.stretch_stats(bands)
    rgb = to_rgb(arr, lo=lo, hi=hi, nodata=raster.nodata)
    valid = raster.valid_mask()
    rgb[~valid] = 0
    return rgb, valid


def as_encoder(model: ImageTextEncoder | str) -> ImageTextEncoder:
    if isinstance(model, str):
        from skylens.models.base import load

        model = load(model)
    if hasattr(model, "require"):
        model.require(ImageTextEncoder)
    return model


def check_tile(raster: Raster, size: int, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise InputError(f"{name} must be a positive number of pixels, got {size!r}")
    if size > raster.width or size > raster.height:
        raise InputError(
            f"{raster.path}: {name} {size} px is larger than the scene "
            f"({raster.width} x {raster.height} px); use --{name} {min(raster.width, raster.height)} "
            "or smaller"
        )


def check_bands(
    before: Raster, after: Raster, bands: str | Sequence[int] | None
) -> tuple[list[int], list[int]]:
    if bands is None and before.count != after.count:
        raise BandError(
            f"{before.path} has {before.count} bands but {after.path} has {after.count}; "
            "give the bands to compare explicitly (e.g. --bands 3,2,1)"
        )
    return (
        parse_bands(bands, before.count, before.path, before.band_names),
        parse_bands(bands, after.count, after.path, after.band_names),
    )


def align_after(before: Raster, after: Raster, assume_aligned: bool, warnings: list[str]) -> Raster:
    """AFTER on BEFORE's pixel grid: itself when already aligned, else a warped view."""
    geo_b = before.crs is not None and before.transform is not None
    geo_a = after.crs is not None and after.transform is not None
    if geo_b != geo_a:
        has, lacks = (before, after) if geo_b else (after, before)
        if not assume_aligned:
            raise GeoError(
                f"{has.path} has a CRS but {lacks.path} has none, so they cannot be placed on "
                "one grid; georeference it, or pass --assume-aligned if the pixels already match"
            )
        warnings.append(
            f"{lacks.path} has no CRS: assumed aligned pixel-for-pixel with {has.path} "
            "(--assume-aligned); the map is only right if that holds"
        )
        if not geo_b:
            warnings.append(f"{before.path} has no CRS: regions have no map polygons or m² areas")
    if not (geo_b and geo_a):
        if (before.width, before.height) != (after.width, after.height):
            raise GeoError(
                f"{before.path} ({before.width} x {before.height} px) and {after.path} "
                f"({after.width} x {after.height} px) differ in size and are not both "
                "georeferenced; resample them to one grid first"
            )
        if not (geo_b or geo_a):
            warnings.append("neither raster has a CRS: compared pixel-for-pixel; no map polygons")
        return after
    crs_b, crs_a = CRS.from_user_input(before.crs), CRS.from_user_input(after.crs)
    bb = before.bounds
    try:
        ab = transform_bounds(crs_a, crs_b, *after.bounds, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - any PROJ failure means no common ground
        raise GeoError(
            f"{after.path}: its bounds cannot be transformed to {before.crs} ({exc})"
        ) from None
    ix = min(bb[2], ab[2]) - max(bb[0], ab[0])
    iy = min(bb[3], ab[3]) - max(bb[1], ab[1])
    if ix <= 0 or iy <= 0 or not np.isfinite([ix, iy]).all():
        raise GeoError(
            f"{before.path} and {after.path} do not overlap (bounds in {before.crs}: "
            f"{_fmt_bounds(bb)} vs {_fmt_bounds(ab)}); give two images of the same place"
        )
    same_grid = (
        crs_a == crs_b
        and after.transform.almost_equals(before.transform)
        and (after.width, after.height) == (before.width, before.height)
    )
    if same_grid:
        return after
    share = (ix * iy) / ((bb[2] - bb[0]) * (bb[3] - bb[1]))
    warnings.append(
        f"{after.path} warped onto the grid of {before.path} ({after.crs} -> {before.crs}, "
        f"bilinear); they overlap on {share:.0%} of BEFORE"
    )
    vrt = WarpedVRT(
        after.dataset,
        crs=crs_b,
        transform=before.transform,
        width=before.width,
        height=before.height,
        resampling=Resampling.bilinear,
    )
    return dataclasses.replace(
        after,
        width=before.width,
        height=before.height,
        transform=before.transform,
        crs=before.crs,
        gsd=before.gsd,
        _ds=vrt,
        _stats={},
    )


def _fmt_bounds(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"
