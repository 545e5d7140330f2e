"""Cut rasters into chips with their place on the map: pixel window, CRS bounds, WGS84 footprint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.warp import transform as warp_transform

from skylens.errors import GeoError, InputError
from skylens.imagery.raster import Raster, parse_bands
from skylens.imagery.render import to_rgb


@dataclass(frozen=True)
class Chip:
    """A window of a raster and where it lies.

    Attributes:
        source: path of the raster.
        window: (col_off, row_off, width, height) in pixels.
        bounds: (minx, miny, maxx, maxy) in the raster CRS, or None when not georeferenced.
        crs: the raster CRS (``EPSG:...``) or None.
        footprint: GeoJSON Polygon in EPSG:4326 (lon, lat), closed ring, or None.
    """

    source: str
    window: tuple[int, int, int, int]
    bounds: tuple[float, float, float, float] | None
    crs: str | None
    footprint: dict | None

    def to_geojson_feature(self, properties: dict | None = None) -> dict:
        props = {
            "source": self.source,
            "window": list(self.window),
            "crs": self.crs,
            "bounds": self.bounds,
        }
        props.update(properties or {})
        return {"type": "Feature", "geometry": self.footprint, "properties": props}


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:  # last chip shifted inward so the edge is covered
        starts.append(length - size)
    return starts


def window_geometry(
    raster: Raster, window: tuple[int, int, int, int]
) -> tuple[tuple | None, dict | None]:
    """(bounds in the raster CRS, WGS84 footprint polygon) of a pixel window."""
    if raster.transform is None or raster.crs is None:
        return None, None
    col, row, w, h = window
    t = raster.transform
    corners = [t @ (col, row), t @ (col + w, row), t @ (col + w, row + h), t @ (col, row + h)]
    xs = [c[0] for c in corners]
    ys = [c[1] for c in corners]
    bounds = (min(xs), min(ys), max(xs), max(ys))
    try:
        lon, lat = warp_transform(raster.crs, "EPSG:4326", xs, ys)
    except Exception as exc:  # noqa: BLE001 - PROJ errors come in several types
        raise GeoError(
            f"{raster.path}: cannot transform its CRS {raster.crs} to WGS84 ({exc})"
        ) from None
    ring = [[round(x, 8), round(y, 8)] for x, y in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    return bounds, {"type": "Polygon", "coordinates": [ring]}


def tile(raster: Raster, size: int = 256, overlap: int = 32) -> Iterator[Chip]:
    """Row-major sliding windows of ``size`` pixels with ``overlap``; no pixels are read."""
    if size <= 0:
        raise InputError(f"tile size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise InputError(f"overlap must be in 0..{size - 1} for tile size {size}, got {overlap}")
    stride = size - overlap
    for row in _starts(raster.height, size, stride):
        for col in _starts(raster.width, size, stride):
            window = (col, row, min(size, raster.width), min(size, raster.height))
            bounds, footprint = window_geometry(raster, window)
            yield Chip(raster.path, window, bounds, raster.crs, footprint)


def read_chip(
    raster: Raster,
    chip: Chip,
    *,
    bands: str | Sequence[int] | None = None,
    stretch: str = "auto",
    min_valid: float = 0.01,
) -> tuple[np.ndarray | None, float]:
    """Render a chip to RGB uint8; returns (rgb or None when under ``min_valid``, valid fraction).

    Non-uint8 data is stretched with the whole raster's p2-p98 statistics.
    """
    band_list = parse_bands(bands, raster.count, raster.path, raster.band_names)
    valid = raster.valid_mask(chip.window)
    frac = float(valid.mean()) if valid.size else 0.0
    if frac < min_valid:
        return None, frac
    arr = raster.read(chip.window, band_list)
    lo = hi = None
    if raster.dtype != "uint8" and stretch == "auto":
        lo, hi = raster.stretch_stats(band_list)
    rgb = to_rgb(arr, stretch=stretch, lo=lo, hi=hi, nodata=raster.nodata)
    rgb[~valid] = 0
    return rgb, frac
