"""What the service checks before any byte reaches a decoder or any path reaches the disk.

- Uploads are read in chunks and refused past a size limit (413), sniffed by their magic bytes
  (JPEG, PNG, TIFF/BigTIFF, WebP, JPEG 2000) whatever their name or declared type (415), then
  decoded by ``skylens.imagery`` like any file, so a corrupt image is a 400 that names the upload.
- Server-side paths are resolved (symlinks and ``..`` included) and must lie under a configured
  root (403 otherwise).
- A bearer token, when configured, is compared in constant time (401 otherwise).
"""

from __future__ import annotations

import hmac
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from skylens.errors import ImageReadError, InputError, SkylensError

CHUNK_BYTES = 1 << 20  # uploads are read 1 MiB at a time
NAME_MAX_BYTES = 255  # longest file name (one path component) POSIX file systems accept
PATH_MAX_BYTES = 4096
MULTIPART_SLACK = 1 << 20  # bytes of form fields and multipart headers allowed beyond the image

#: (magic bytes at offset 0, kind, suffix GDAL recognises)
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "JPEG", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
    (b"II*\x00", "TIFF", ".tif"),
    (b"MM\x00*", "TIFF", ".tif"),
    (b"II+\x00", "TIFF", ".tif"),  # BigTIFF
    (b"MM\x00+", "TIFF", ".tif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000", ".jp2"),
    (b"\xffO\xffQ", "JPEG 2000", ".j2k"),  # raw codestream
)
ACCEPTED_KINDS = "JPEG, PNG, TIFF/GeoTIFF, WebP or JPEG 2000"


class UploadTooLargeError(InputError):
    """An upload (or a request body) is bigger than the configured limit."""

    http_status = 413


class UnsupportedMediaError(InputError):
    """An upload is not an image format skylens reads (judged by its bytes, not its name)."""

    http_status = 415


class PathNotAllowedError(InputError):
    """A server-side path lies outside the configured roots, or no roots are configured."""

    http_status = 403


class AuthError(SkylensError):
    """A request lacks the bearer token the service was started with."""

    http_status = 401


def format_bytes(n: int) -> str:
    """``52428800`` -> ``'50 MiB'`` (binary units, as the limit is set)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def sniff_image(head: bytes) -> tuple[str, str] | None:
    """(kind, file suffix) of an image from its first bytes, or None when not an accepted one."""
    for magic, kind, suffix in _MAGIC:
        if head.startswith(magic):
            return kind, suffix
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", ".webp"
    return None


async def read_upload(upload, name: str, max_bytes: int) -> bytes:
    """All bytes of a Starlette ``UploadFile``, read in chunks, refused past ``max_bytes``.

    Raises:
        UploadTooLargeError: more than ``max_bytes`` bytes (the message names the limit).
        InputError: an empty upload.
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise UploadTooLargeError(
                f"upload '{name}' is larger than the {format_bytes(max_bytes)} limit "
                f"({max_bytes} bytes); send a smaller image or start the service with a higher "
                "limit"
            )
        chunks.append(chunk)
    if not size:
        raise InputError(f"upload '{name}' is empty")
    return b"".join(chunks)


def _sniffed(data: bytes, name: str) -> tuple[str, str]:
    found = sniff_image(data[:16])
    if found is None:
        raise UnsupportedMediaError(
            f"upload '{name}' is not an image skylens reads (its bytes are not {ACCEPTED_KINDS})"
        )
    return found


@contextmanager
def saved_upload(data: bytes, name: str) -> Iterator[Path]:
    """Uploaded image bytes as a private temporary file (GDAL reads files), removed on exit.

    The suffix follows the sniffed format, so a GeoTIFF keeps its georeferencing for the tasks
    that read rasters by path (change, localize).

    Raises:
        UnsupportedMediaError: the bytes are not an accepted image format.
    """
    _, suffix = _sniffed(data, name)
    fd, tmp = tempfile.mkstemp(prefix="skylens-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def decode_upload(data: bytes, name: str, *, bands: str | None = None) -> np.ndarray:
    """Decode uploaded image bytes to an RGB uint8 array through ``skylens.imagery``.

    Raises:
        UnsupportedMediaError: the bytes are not an accepted image format.
        ImageReadError: the image is truncated or corrupt (the message names the upload).
    """
    from skylens.tasks.common import load_scene_rgb

    kind, _ = _sniffed(data, name)
    with saved_upload(data, name) as tmp:
        try:
            return load_scene_rgb(tmp, bands=bands)
        except ImageReadError as exc:
            raise ImageReadError(
                f"upload '{name}'", f"{kind} image cannot be decoded: {exc.reason}"
            ) from None
        except SkylensError as exc:  # bands etc.: say which upload, not the temp file
            raise type(exc)(str(exc).replace(str(tmp), f"upload '{name}'")) from None


def resolve_under_roots(path: str, roots: Sequence[Path]) -> Path:
    """A server-side path, resolved, that must lie inside one of ``roots``.

    Raises:
        PathNotAllowedError: no roots configured, or the resolved path escapes them
            (``..``, absolute paths elsewhere, symlinks out).
    """
    if not roots:
        raise PathNotAllowedError(
            "server-side paths are disabled: start the service with --root DIR to allow them"
        )
    shown = path[:200]
    if not path or "\x00" in path:
        raise PathNotAllowedError(f"path '{shown}' is empty or holds a NUL character")
    too_long = [part for part in Path(path).parts if len(os.fsencode(part)) > NAME_MAX_BYTES]
    if too_long or len(os.fsencode(path)) > PATH_MAX_BYTES:
        raise InputError(
            f"path '{shown}' is too long: a name may hold {NAME_MAX_BYTES} bytes and a path "
            f"{PATH_MAX_BYTES}"
        )
    resolved_roots = [Path(r).resolve() for r in roots]
    raw = Path(path)
    try:
        candidates = (
            [raw.resolve()] if raw.is_absolute() else [(r / raw).resolve() for r in resolved_roots]
        )
    except (OSError, ValueError, RuntimeError):  # symlink loops, names the OS refuses
        raise PathNotAllowedError(f"path '{shown}' cannot be resolved") from None
    for cand in candidates:
        if any(cand.is_relative_to(r) for r in resolved_roots):
            return cand
    raise PathNotAllowedError(f"path '{shown}' is outside the served roots")


def token_matches(header: str | None, token: str) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
