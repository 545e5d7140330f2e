"""Cut rasters into chips with their place on the map: pixel window, CRS bounds, WGS84 footprint.

``tile`` is pure geometry (no pixel is read), so a 20,000 x 20,000 scene tiles in the time it
takes to transform its chip corners. ``read_chip`` then reads one chip by window and renders it.
Footprints are GeoJSON Polygons (RFC 7946): EPSG:4326 longitude/latitude, closed ring of the
four chip corners in pixel order (top-left, top-right, bottom-right, bottom-left).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.warp import transform as warp_transform

from skylens.errors import InputError
from skylens.imagery.raster import GDAL_ERRORS, Raster, parse_bands, read_raster
from skylens.imagery.render import parse_stretch, stretch_percentiles, to_rgb

Bounds = tuple[float, float, float, float]
COORD_DECIMALS = 8  # ~1 mm at the equator: footprints compare equal across runs


@dataclass(frozen=True)
class Chip:
    """A window of a raster and where it lies.

    Attributes:
        source: path of the raster.
        window: (col_off, row_off, width, height) in pixels.
        bounds: (minx, miny, maxx, maxy) in the raster CRS, or None when not georeferenced.
        crs: the raster CRS (``EPSG:...``) or None.
        footprint: GeoJSON Polygon in EPSG:4326 (lon, lat) with a closed ring of the four
            corners, or None without a CRS (or where the corners fall outside the CRS's domain).
    """

    source: str
    window: tuple[int, int, int, int]
    bounds: Bounds | None
    crs: str | None
    footprint: dict | None

    def to_geojson_feature(self, properties: dict | None = None) -> dict:
        """A GeoJSON Feature: the footprint as geometry (null when absent), chip facts and
        ``properties`` (which win over the defaults) as properties."""
        props = {
            "source": self.source,
            "window": list(self.window),
            "crs": self.crs,
            "bounds": list(self.bounds) if self.bounds is not None else None,
        }
        props.update(properties or {})
        return {"type": "Feature", "geometry": self.footprint, "properties": props}


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride``, the last shifted inward to the edge."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _corners(raster: Raster, windows: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """(N, 4, 2) CRS coordinates of the windows' corners: TL, TR, BR, BL."""
    t = raster.transform
    px = np.array(
        [[(c, r), (c + w, r), (c + w, r + h), (c, r + h)] for c, r, w, h in windows], np.float64
    )
    x = t.a * px[..., 0] + t.b * px[..., 1] + t.c
    y = t.d * px[..., 0] + t.e * px[..., 1] + t.f
    return np.stack([x, y], -1)


def _to_wgs84(crs: str, corners: np.ndarray) -> np.ndarray | None:
    """Corners (..., 2) in ``crs`` -> lon/lat, or None when any point cannot be transformed."""
    if crs in ("EPSG:4326", "OGC:CRS84"):
        return corners.copy()
    flat = corners.reshape(-1, 2)
    try:
        lon, lat = warp_transform(crs, "EPSG:4326", flat[:, 0].tolist(), flat[:, 1].tolist())
    except GDAL_ERRORS:  # e.g. a geostationary view: corners in space, off the Earth's disc
        return None
    out = np.stack([np.asarray(lon), np.asarray(lat)], -1).reshape(corners.shape)
    return out if np.isfinite(out).all() else None


def _polygon(lonlat: np.ndarray) -> dict:
    ring = [[round(float(x), COORD_DECIMALS), round(float(y), COORD_DECIMALS)] for x, y in lonlat]
    ring.append(list(ring[0]))
    return {"type": "Polygon", "coordinates": [ring]}


def _geometries(
    raster: Raster, windows: Sequence[tuple[int, int, int, int]]
) -> list[tuple[Bounds | None, dict | None]]:
    """(bounds, footprint) of many windows with one coordinate transformation."""
    if raster.transform is None or raster.crs is None or not windows:
        return [(None, None)] * len(windows)
    corners = _corners(raster, windows)
    bounds = [
        (float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max()))
        for c in corners
    ]
    lonlat = _to_wgs84(raster.crs, corners)
    if lonlat is not None:
        return [(b, _polygon(ll)) for b, ll in zip(bounds, lonlat, strict=True)]
    # Some corner failed: transform chip by chip so that the chips that can be placed are.
    out = []
    for b, c in zip(bounds, corners, strict=True):
        ll = _to_wgs84(raster.crs, c)
        out.append((b, _polygon(ll) if ll is not None else None))
    return out


def window_geometry(
    raster: Raster, window: tuple[int, int, int, int]
) -> tuple[Bounds | None, dict | None]:
    """(bounds in the raster CRS, EPSG:4326 footprint Polygon) of a pixel window.

    Both are None when the raster is not georeferenced; the footprint is None when a corner
    lies outside the domain of the raster's CRS.
    """
    return _geometries(raster, [tuple(int(v) for v in window)])[0]


def tile(raster: Raster, size: int = 256, overlap: int = 32) -> Iterator[Chip]:
    """Sliding square windows over the raster, row-major, without reading pixels.

    Windows step by ``size - overlap`` pixels; the last row and column are shifted inward so
    every chip lies inside the raster and the right and bottom edges are covered. Along a side
    shorter than ``size`` there is one chip spanning that whole side.

    Args:
        raster: an open raster (only its size and georeferencing are used).
        size: chip side in pixels, > 0.
        overlap: pixels shared by neighbouring chips, 0 <= overlap < size.

    Raises:
        InputError: bad size or overlap.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise InputError(f"tile size must be a positive number of pixels, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)):
        raise InputError(f"overlap must be a whole number of pixels, got {overlap!r}")
    if not 0 <= overlap < size:
        raise InputError(f"overlap must be in 0..{size - 1} for tile size {size}, got {overlap}")
    size, overlap = int(size), int(overlap)
    stride = size - overlap
    width, height = min(size, raster.width), min(size, raster.height)
    cols = window_starts(raster.width, size, stride)
    for row in window_starts(raster.height, size, stride):
        windows = [(col, row, width, height) for col in cols]
        for window, (bounds, footprint) in zip(windows, _geometries(raster, windows), strict=True):
            yield Chip(raster.path, window, bounds, raster.crs, footprint)


def read_chip(
    raster: Raster,
    chip: Chip,
    *,
    bands: str | Sequence[int] | None = None,
    stretch: str = "auto",
    min_valid: float = 0.01,
) -> tuple[np.ndarray | None, float]:
    """Read a chip and render it to RGB.

    Stretches use the whole scene's statistics (``Raster.stretch_stats``), so neighbouring
    chips match; 'auto' leaves uint8 data as-is and stretches anything else p2-p98.
    Invalid pixels (nodata, NaN, alpha 0, masked) are black.

    Args:
        raster: the open raster the chip came from.
        chip: the chip (its window must lie inside the raster).
        bands: bands as R, G, B (see ``parse_bands``); default: the bands named red, green,
            blue, else 1, 2, 3, else grey.
        stretch: 'auto', 'pLO-pHI', 'minmax' or 'none' (see ``to_rgb``).
        min_valid: below this fraction (0..1) of valid pixels the chip is not rendered.

    Returns:
        (HxWx3 uint8 RGB, or None when the valid fraction is below ``min_valid``; the valid
        fraction, 0..1).

    Raises:
        BandError, InputError: bad bands, stretch or window.
        ImageReadError: the pixels cannot be decoded.
    """
    band_list = parse_bands(bands, raster.count, raster.path, raster.band_names)
    parse_stretch(stretch)
    valid = raster.valid_mask(chip.window)
    fraction = float(valid.mean()) if valid.size else 0.0
    if fraction < min_valid:
        return None, fraction
    arr = raster.read(chip.window, band_list)
    lo = hi = None
    percentiles = stretch_percentiles(stretch, raster.dtype)
    if percentiles is not None:
        lo, hi = raster.stretch_stats(band_list, *percentiles)
    rgb = to_rgb(arr, stretch=stretch, lo=lo, hi=hi, nodata=raster.nodata)
    rgb[~valid] = 0
    return rgb, fraction


def window_thumbnail_png(
    path: str | Path,
    window: Sequence[int],
    *,
    bands: str | Sequence[int] | None = None,
    size: int = 256,
) -> bytes:
    """A pixel window of a raster rendered to RGB, shrunk to at most ``size`` px a side, as PNG."""
    from PIL import Image

    from skylens.imagery.render import png_bytes

    with read_raster(path) as raster:
        chip = Chip(
            source=str(path),
            window=tuple(int(v) for v in window),
            bounds=None,
            crs=None,
            footprint=None,
        )
        rgb, _ = read_chip(raster, chip, bands=bands, min_valid=0.0)
    image = Image.fromarray(rgb if rgb is not None else np.zeros((8, 8, 3), np.uint8))
    image.thumbnail((size, size))
    return png_bytes(image)
