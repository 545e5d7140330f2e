"""Damaged indexes: recognise LanceDB's I/O failures and say what is wrong and how to fix it.

A Lance table is a chain of manifests (``_versions/*.manifest``) naming data files
(``data/*.lance``). When a data file is deleted or a manifest truncated (a disk filled up, a
partial copy, a hand edit), LanceDB raises a bare ``RuntimeError`` with a Rust source location.
``guard`` turns those into one ``DamagedIndexError`` (an ``InputError``) that names the index,
what is damaged and the fix, so the CLI and the service print one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from skylens.errors import InputError

F = TypeVar("F", bound=Callable)

# LanceDB/Lance messages that mean files of the table are missing or unreadable
_DAMAGE = re.compile(
    r"Not found|No such file|does not have sufficient data|LanceError\(IO\)|corrupt|"
    r"Invalid (?:manifest|protobuf)|failed to decode|unexpected end of file|DecodeError",
    re.IGNORECASE,
)
_PATH = re.compile(r"(?:Not found|No such file[^:]*):\s*([^,\s]+)")


class DamagedIndexError(InputError):
    """An index's table files are missing or unreadable."""


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is LanceDB reporting missing or unreadable table files."""
    return isinstance(exc, (RuntimeError, OSError)) and bool(_DAMAGE.search(str(exc)))


def damaged(directory: Path | str, exc: BaseException) -> DamagedIndexError:
    """The ``DamagedIndexError`` for ``exc`` raised by the table of the index at ``directory``."""
    text = str(exc)
    missing = _PATH.search(text)
    if missing:
        what = f"a data file is missing ({Path(missing.group(1)).name})"
    elif "sufficient data" in text or "manifest" in text.lower():
        what = "a table manifest is truncated or unreadable"
    else:
        what = f"its table files are unreadable ({text.splitlines()[0][:120]})"
    name = Path(directory).name  # the folder's name only: the message may reach an HTTP client
    return DamagedIndexError(
        f"index '{name}' is damaged: {what}. Restore the folder from a backup, or delete it "
        f"and rebuild it with `skylens index SOURCES --index {name}`"
    )


@contextlib.contextmanager
def guard(directory: Path | str) -> Iterator[None]:
    """Re-raise LanceDB damage errors inside the block as ``DamagedIndexError``."""
    try:
        yield
    except InputError:
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
