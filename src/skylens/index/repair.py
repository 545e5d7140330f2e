"""Damaged indexes: recognise LanceDB's I/O failures and say what is wrong and how to fix it.

A Lance table is a chain of manifests (``_versions/*.manifest``) naming data files
(``data/*.lance``). When a data file is deleted or a manifest truncated (a disk filled up, a
partial copy, a hand edit), LanceDB raises a bare ``RuntimeError`` with a Rust source location.
``guard`` turns those into one ``DamagedIndexError`` (HTTP 503) that names the index,
what is damaged and the fix, so the CLI and the service print one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from skylens.errors import InputError, SkylensError

F = TypeVar("F", bound=Callable)

# LanceDB/Lance messages that mean files of the table are missing or unreadable
_DAMAGE = re.compile(
    r"Not found|No such file|does not have sufficient data|LanceError\(IO\)|corrupt|"
    r"Invalid (?:manifest|protobuf)|failed to decode|unexpected end of file|DecodeError",
    re.IGNORECASE,
)
_PATH = re.compile(r"(?:Not found|No such file[^:]*):\s*([^,\s]+)")


log = logging.getLogger(__name__)


class DamagedIndexError(SkylensError, RuntimeError):
    """An index's table files are missing or unreadable: a server-side condition (HTTP 503),
    and a storage failure, so ``skylens.tasks.search.reading`` reports it as the faces do."""

    http_status = 503


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is LanceDB reporting missing or unreadable table files."""
    return isinstance(exc, (RuntimeError, OSError)) and bool(_DAMAGE.search(str(exc)))


def damaged(directory: Path | str, exc: BaseException) -> DamagedIndexError:
    """The ``DamagedIndexError`` for ``exc`` raised by the table of the index at ``directory``."""
    text = str(exc)
    missing = _PATH.search(text)
    if missing:
        what = f"a data file is missing ({Path(missing.group(1)).name})"
    elif "sufficient data" in text or "too small" in text or "manifest" in text.lower():
        what = "a table manifest is truncated or unreadable"
    else:  # LanceDB's own text names paths of the machine: it goes to the log, not the user
        log.warning("index %s is damaged: %s", directory, text)
        what = "its table files are unreadable"
    name = Path(directory).name  # the folder's name only: the message may reach an HTTP client
    return DamagedIndexError(
        f"index '{name}' is damaged: {what}, so its Lance table cannot be read. Restore the "
        f"folder from a backup, or delete it and rebuild it with `skylens index SOURCES --index "
        f"{name}`"
    )


@contextlib.contextmanager
def guard(directory: Path | str) -> Iterator[None]:
    """Re-raise LanceDB damage errors inside the block as ``DamagedIndexError``."""
    try:
        yield
    except (InputError, DamagedIndexError):
        raise
    except (RuntimeError, OSError) as exc:
        if is_damage(exc):
            raise damaged(directory, exc) from None
        raise


def guarded(method: F) -> F:
    """Decorate a ``ChipIndex`` method: damage errors name the index (``guard``)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with guard(self.directory):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
