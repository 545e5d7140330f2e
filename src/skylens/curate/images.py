"""Image facts a curate step needs: content digest, size, a decode check, and pixels of a record.

Kept apart from the steps so that every step checks and decodes images the same way, and so that
a record's pixels (a file, a window of a file, or bytes) are read in one place.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skylens.errors import ImageReadError
from skylens.imagery.files import file_digest


def readable_size(
    item: Mapping[str, Any], skip_bad: bool, removed: list[dict]
) -> tuple[int, int] | None:
    """(width, height) of ``item["path"]`` via :func:`check_image`; an unreadable image raises,
    or with ``skip_bad`` is noted in ``removed`` (by ``item["sample_id"]``) and gives None."""
    try:
        return check_image(item["path"])
    except ImageReadError as exc:
        if not skip_bad:
            raise
        removed.append({"id": item["sample_id"], "reason": "unreadable image", "error": str(exc)})
        return None


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
    if not record.get("image_bytes") and record.get("image_window"):
        c, r, w, h = (int(v) for v in record["image_window"])
        crop = _whole_rgb(str(record["image_path"]))[r : r + h, c : c + w]
        return _fit(Image.fromarray(crop), max_side)
    try:
        # bytes are the record's own pixels (already windowed); a window applies to the file
        source = (
            io.BytesIO(record["image_bytes"]) if record.get("image_bytes") else record["image_path"]
        )
        with Image.open(source) as im:
            if max_side:
                im.draft("RGB", (max_side, max_side))
            return _fit(im.convert("RGB"), max_side)
    except FileNotFoundError:
        raise ImageReadError(where, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(where, f"cannot decode image: {exc}") from None


def _fit(im, max_side: int | None) -> np.ndarray:
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    return np.asarray(im, dtype=np.uint8)


@functools.lru_cache(maxsize=2)
def _whole_rgb(path: str) -> np.ndarray:
    """A whole image decoded once for its many windows (region crops come in file order)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"cannot decode image: {exc}") from None


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
