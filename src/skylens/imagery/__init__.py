"""imagery: pixels and places. Read any raster by window, render to RGB, tile with footprints.

Imports nothing of skylens but its errors.
"""

from skylens.imagery.raster import (
    DEFAULT_MAX_PIXELS,
    RASTER_SUFFIXES,
    Raster,
    file_digest,
    iter_image_files,
    parse_bands,
    read_raster,
)
from skylens.imagery.render import to_rgb
from skylens.imagery.tiling import Chip, read_chip, tile, window_geometry

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RASTER_SUFFIXES",
    "Chip",
    "Raster",
    "file_digest",
    "iter_image_files",
    "parse_bands",
    "read_chip",
    "read_raster",
    "tile",
    "to_rgb",
    "window_geometry",
]
