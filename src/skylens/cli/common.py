"""What every CLI command shares: consoles, the error handler, the progress bar, output formats.

One home for each (STYLE.md #14): commands print through ``out``/``err``, report user errors
through ``friendly``, show long work through ``progress`` and take ``--format`` as an
``OutputFormat``. Text that came from the user (paths, labels, queries) goes through ``escape``
before it meets Rich markup, so ``[/x]`` in a name prints as itself.
"""

from __future__ import annotations

import functools
import json
import os
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from skylens.errors import InputError, SkylensError

out = Console()
err = Console(stderr=True)

__all__ = [
    "OutputFormat",
    "check_format",
    "emit_json",
    "err",
    "escape",
    "friendly",
    "out",
    "progress",
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


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (strict: NaN and infinities become null)."""
    typer.echo(json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str))


def _finite(value: Any) -> Any:
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
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def progress(*, shown: bool = True) -> Progress:
    """The one progress bar: on stderr, drawn when stderr is a terminal or SKYLENS_PROGRESS=1.

    Tasks carry a ``rate`` field (e.g. ``bar.add_task("embedding", total=n, rate="")``).
    """
    visible = shown and (err.is_terminal or os.environ.get("SKYLENS_PROGRESS") == "1")
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not visible,
    )
