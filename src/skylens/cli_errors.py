"""The one way every CLI command reports a user-facing error: one line, exit code 2."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from skylens.errors import SkylensError

err = Console(stderr=True)


def friendly(fn):
    """Turn ``SkylensError`` into a one-line message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SkylensError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(2) from None

    return wrapper
