"""What every CLI command shares: consoles, the error handler, the progress bar, output formats.

One home for each (STYLE.md #14): commands print through ``out``/``err``, report user errors
through ``friendly``, show long work through ``progress`` and take ``--format`` as an
``OutputFormat``. Text that came from the user (paths, labels, queries) goes through ``escape``
before it meets Rich markup, so ``[/x]`` in a name prints as itself.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from skylens.errors import InputError, SkylensError

if TYPE_CHECKING:
    from rich.progress import Progress

out = Console()
err = Console(stderr=True)

__all__ = [
    "OutputFormat",
    "check_format",
    "emit_json",
    "err",
    "escape",
    "fail",
    "friendly",
    "out",
    "progress",
    "safe_text",
    "say",
    "user_text",
    "warn",
]


class OutputFormat(str, Enum):
    """Every ``--format`` a command may offer; each command says which it accepts."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    geojson = "geojson"
    csv = "csv"
    html = "html"


def check_format(fmt: OutputFormat | str, allowed: tuple[str, ...]) -> OutputFormat:
    """``fmt`` as an ``OutputFormat`` if the command offers it, else an ``InputError``."""
    value = fmt.value if isinstance(fmt, OutputFormat) else str(fmt)
    if value not in allowed:
        raise InputError(f"--format must be one of {', '.join(allowed)}, got '{value}'")
    return OutputFormat(value)


def emit_json(data: Any, *, lines: bool = False) -> None:
    """Print ``data`` as JSON on stdout (strict: NaN and infinities become null).

    ``lines``: ``data`` is a sequence printed as JSON lines, one compact object a line.
    """
    if lines:
        for item in data:
            typer.echo(safe_text(json.dumps(_finite(item), ensure_ascii=False, default=str)))
        return
    typer.echo(safe_text(json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str)))


def safe_text(text: str) -> str:
    """``text`` printable on any UTF-8 stream: bytes a file name held that are not UTF-8
    (surrogate escapes) print as ``\\udcff``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def user_text(value: object) -> str:
    """User-given text (a path, label, query) ready to meet Rich markup: printed as itself."""
    return escape(safe_text(str(value)))


def say(message: object) -> None:
    """A progress or log line on stderr, printed as itself (no markup)."""
    err.print(user_text(message), highlight=False, soft_wrap=True)


def warn(label: str, message: object) -> None:
    """One warning line on stderr: ``label`` in yellow, then ``message`` as plain text."""
    err.print(f"[yellow]{label}[/] {user_text(message)}", highlight=False, soft_wrap=True)


def _finite(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, (int, float)):
        value = float(value)  # numpy scalars
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def friendly(fn):
    """Turn ``SkylensError`` into a one-line message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SkylensError as exc:
            fail(str(exc))
        except OSError as exc:  # the file system refused (a name too long, no space, a folder)
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")

    return wrapper


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the user's input)."""
    err.print(f"[bold red]error:[/] {user_text(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress(*, shown: bool = True, unit: str = "items") -> Progress:
    """The one progress bar: on stderr, drawn when stderr is a terminal or SKYLENS_PROGRESS=1.

    Shows done/total, the measured rate in ``unit``/s (Rich's moving average over the work
    actually done, so skipped items count) and the time left. Tasks may carry a ``rate`` field
    for compatibility (``bar.add_task("embedding", total=n, rate="")``); it is not shown.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} {unit}/s" if speed else "", style="progress.data.speed")

    visible = shown and (err.is_terminal or os.environ.get("SKYLENS_PROGRESS") == "1")
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not visible,
    )
