"""Chip thumbnails for the web page: look a chip up by id and render its window as a PNG.

The source path comes from the index row, never from the request, so this cannot be pointed at
an arbitrary file.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from skylens.errors import InputError, NotFoundError
from skylens.imagery import Chip, read_chip, read_raster
from skylens.index.store import ChipIndex

_CHIP_ID = re.compile(r"^[0-9a-f]{8,64}$")
THUMBNAIL_MAX_SIDE = 512  # pixels


def chip_record(index: ChipIndex, chip_id: str) -> dict:
    """The stored row (path, window, bands) of chip ``chip_id``.

    Raises:
        InputError: the id is not a hex chip id.
        NotFoundError: no chip with that id in the index.
    """
    if not _CHIP_ID.match(chip_id):
        raise InputError(f"'{chip_id[:80]}' is not a chip id (hex digits, as search returns)")
    getter = getattr(index, "get", None)  # a public lookup, when ChipIndex grows one
    if callable(getter):
        row = getter(chip_id)
    else:
        table = index._table  # noqa: SLF001 - read-only lookup by primary key
        rows = (
            table.search()
            .where(f"id = '{chip_id}'")  # safe: the id matched [0-9a-f]+ above
            .select(["id", "path", "window", "bands"])
            .limit(1)
            .to_arrow()
            .to_pylist()
        )
        row = rows[0] if rows else None
    if not row:
        raise NotFoundError(f"chip '{chip_id}' is not in index {index.directory}")
    return row


def chip_thumbnail_png(index: ChipIndex, chip_id: str, *, size: int = 256) -> bytes:
    """The chip's pixels rendered to RGB, shrunk to at most ``size`` pixels a side, as PNG bytes.

    Raises:
        InputError: bad id or size.
        NotFoundError: unknown chip, or its source file is gone.
        ImageReadError: the source can no longer be decoded.
    """
    from PIL import Image

    if not 8 <= size <= THUMBNAIL_MAX_SIDE:
        raise InputError(f"thumbnail size must be 8..{THUMBNAIL_MAX_SIDE} pixels, got {size}")
    row = chip_record(index, chip_id)
    path = str(row["path"])
    if not Path(path).is_file():
        raise NotFoundError(f"chip '{chip_id}': its source {path} is no longer on disk")
    window = tuple(int(v) for v in row["window"])
    with read_raster(path) as raster:
        chip = Chip(source=path, window=window, bounds=None, crs=None, footprint=None)
        rgb, _ = read_chip(raster, chip, bands=row.get("bands") or None, min_valid=0.0)
    image = Image.fromarray(rgb if rgb is not None else np.zeros((8, 8, 3), np.uint8))
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
