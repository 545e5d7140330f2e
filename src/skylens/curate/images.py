"""Image facts a curate step needs: content digest, size, a decode check, and pixels of a record.

Kept apart from the steps so that every step checks and decodes images the same way, and so that
a record's pixels (a file, a window of a file, or bytes) are read in one place.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skylens.errors import ImageReadError
from skylens.imagery.files import file_digest


def check_image(path: str | Path) -> tuple[int, int]:
    """Decode ``path`` (at reduced scale for JPEG) to prove it is readable; return (width, height).

    Raises:
        ImageReadError: missing, empty, truncated or not an image; names the file.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise ImageReadError(p, "file is empty (0 bytes)")
        with Image.open(p) as im:
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
        return int(size[0]), int(size[1])
    except FileNotFoundError:
        raise ImageReadError(p, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(p, f"cannot decode image: {exc}") from None


def bytes_size(data: bytes, where: str) -> tuple[int, int]:
    """Decode encoded image ``data`` fully; return (width, height). ``where`` names it in errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(where, f"cannot decode image bytes: {exc}") from None


def digest_of(path: str | Path, window: Sequence[int] | None = None) -> str:
    """BLAKE2b digest of the file content, and of the window when the record is a crop."""
    base = file_digest(path)
    if not window:
        return base
    return hashlib.blake2b(f"{base}|{list(window)}".encode(), digest_size=16).hexdigest()


def bytes_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def record_pixels(record: Mapping[str, Any], max_side: int | None = None) -> np.ndarray:
    """The RGB uint8 pixels (H x W x 3) of a record: its bytes, its file, or its file's window.

    Args:
        record: a curated record.
        max_side: when given, the image is reduced (aspect kept) so its longer side is at most
            this many pixels (JPEG decodes at reduced scale, which is much faster).
    """
    from PIL import Image, UnidentifiedImageError

    where = record.get("image_path") or f"record {record.get('id')}"
    try:
        if record.get("image_bytes"):
            im = Image.open(io.BytesIO(record["image_bytes"]))
        else:
            im = Image.open(record["image_path"])
        with im:
            # bytes are the record's own pixels (already windowed); a window applies to the file
            window = None if record.get("image_bytes") else record.get("image_window")
            if max_side and not window:
                im.draft("RGB", (max_side, max_side))
            im = im.convert("RGB")
            if window:
                c, r, w, h = (int(v) for v in window)
                im = im.crop((c, r, c + w, r + h))
            if max_side and max(im.size) > max_side:
                im.thumbnail((max_side, max_side))
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(where, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(where, f"cannot decode image: {exc}") from None


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of RGB uint8 pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def record_jpeg(record: Mapping[str, Any]) -> bytes:
    """JPEG bytes of a record's image: the file itself when it is a whole JPEG, else re-encoded."""
    path = record.get("image_path")
    if record.get("image_bytes") and record["image_bytes"][:2] == b"\xff\xd8":
        return bytes(record["image_bytes"])
    if path and not record.get("image_window") and Path(path).suffix.lower() in (".jpg", ".jpeg"):
        return Path(path).read_bytes()
    return encode_jpeg(record_pixels(record))
