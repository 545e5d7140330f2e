"""Find raster files and fingerprint their content.

``iter_image_files`` turns the paths a user gives (files and folders) into the raster files to
read; ``file_digest`` hashes a file's bytes, so an index can recognise a scene it has seen even
when it was renamed or moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from skylens.errors import ImageReadError, InputError

#: Extensions (lower-case) that a folder is expanded to.
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2", ".bmp", ".webp", ".gif")
DIGEST_BLOCK = 1 << 20  # bytes read at a time: 1 MiB


def file_digest(path: str | Path) -> str:
    """Hex BLAKE2b digest (16 bytes, 32 hex characters) of the file's content.

    Streamed in 1 MiB blocks, so memory stays flat for any file size.

    Raises:
        ImageReadError: the file cannot be read (missing, a folder, no permission).
    """
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(DIGEST_BLOCK):
                h.update(block)
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    return h.hexdigest()


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def iter_image_files(paths: Sequence[str | Path], *, recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into raster files.

    A folder yields the files under it whose extension is in ``RASTER_SUFFIXES``
    (case-insensitive), sorted, skipping hidden files and anything inside hidden folders. A
    file given explicitly is yielded whatever its extension, so that a bad file gets a clear
    error from ``read_raster`` instead of being ignored. A path reached twice is yielded once.

    Args:
        paths: files and folders, in the order to visit them.
        recursive: descend into sub-folders.

    Raises:
        ImageReadError: a path does not exist (raised when the iteration reaches it).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        try:
            if not root.exists():
                raise ImageReadError(root, "file or folder not found")
            if root.is_file():
                found = [root]
            else:
                candidates = root.rglob("*") if recursive else root.iterdir()
                found = sorted(
                    f
                    for f in candidates
                    if f.suffix.lower() in RASTER_SUFFIXES
                    and not _is_hidden(f, root)
                    and f.is_file()
                )
        except OSError as exc:  # a name too long, no permission, a loop of links
            raise ImageReadError(root, f"cannot be read ({exc.strerror or exc})") from None
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                yield f


def list_image_files(paths: Sequence[str | Path], *, recursive: bool = True) -> list[Path]:
    """``iter_image_files`` as a list that is never empty.

    Raises:
        ImageReadError: a path does not exist or cannot be read.
        InputError: the paths hold no image file (the message names them).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = list(iter_image_files(paths, recursive=recursive))
    if not files:
        names = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise InputError(
            f"no image files found in {names} (looked for {', '.join(RASTER_SUFFIXES)})"
        )
    return files
