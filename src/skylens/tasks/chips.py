"""Chip thumbnails (the web page, reports): look a chip up by id and render its window as a PNG.

The source path comes from the index row, never from the request, so this cannot be pointed at
an arbitrary file.
"""

from __future__ import annotations

import re
from pathlib import Path

from skylens.errors import InputError, NotFoundError
from skylens.imagery import window_thumbnail_png
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
    row = index.get(chip_id)
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
    if not 8 <= size <= THUMBNAIL_MAX_SIDE:
        raise InputError(f"thumbnail size must be 8..{THUMBNAIL_MAX_SIDE} pixels, got {size}")
    row = chip_record(index, chip_id)
    path = str(row["path"])
    if not Path(path).is_file():
        raise NotFoundError(f"chip '{chip_id}': its source {path} is no longer on disk")
    return window_thumbnail_png(path, row["window"], bands=row.get("bands") or None, size=size)
