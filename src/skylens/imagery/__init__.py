"""imagery: pixels and places. Read any raster by window, render it to RGB, tile it with footprints.

The bottom layer of skylens: it imports nothing of skylens but ``skylens.errors``.

- ``read_raster(path) -> Raster``: open and validate; metadata now, pixels by window.
- ``to_rgb(array, bands=..., stretch=...)``: any bit depth / band combination to uint8 RGB.
- ``tile(raster, size, overlap) -> Chip``: windows with CRS bounds and WGS84 footprints.
- ``read_chip(raster, chip)``: one chip as RGB plus its valid-pixel fraction.
- ``iter_image_files``, ``file_digest``: find rasters in folders, fingerprint their content.
"""

from skylens.imagery.files import RASTER_SUFFIXES, file_digest, iter_image_files, list_image_files
from skylens.imagery.raster import (
    DEFAULT_MAX_PIXELS,
    Raster,
    max_pixels_limit,
    parse_bands,
    read_raster,
)
from skylens.imagery.render import parse_stretch, to_rgb
from skylens.imagery.tiling import (
    Chip,
    read_chip,
    tile,
    window_geometry,
    window_starts,
    window_thumbnail_png,
)
from skylens.imagery.validity import NoValidPixelsError, has_valid_pixels, require_valid_pixels

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "NoValidPixelsError",
    "RASTER_SUFFIXES",
    "Chip",
    "Raster",
    "file_digest",
    "has_valid_pixels",
    "iter_image_files",
    "list_image_files",
    "max_pixels_limit",
    "parse_bands",
    "parse_stretch",
    "read_chip",
    "read_raster",
    "require_valid_pixels",
    "tile",
    "to_rgb",
    "window_geometry",
    "window_starts",
    "window_thumbnail_png",
]
