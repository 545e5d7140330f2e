"""``skylens models``: list the model backends and how to name them."""

from __future__ import annotations

import typer
from rich.table import Table

from skylens.cli.common import out, user_text

app = typer.Typer()


@app.command("models")
def models_cmd() -> None:
    """List model backends and how to name them."""
    from skylens.models import available

    table = Table(title="model backends")
    for col in ("scheme", "example name", "what"):
        table.add_column(col)
    for b in available():
        table.add_row(user_text(b.scheme), user_text(b.example), user_text(b.description))
    out.print(table)
