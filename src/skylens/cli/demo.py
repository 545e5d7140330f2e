"""``skylens demo``: index real aerial imagery, query it and write an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import friendly, out, user_text

app = typer.Typer()


@app.command("demo")
@friendly
def demo_cmd(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the index and the HTML report.")
    ] = Path("demo_out"),
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Imagery to index (default: deepforest's)."),
    ] = None,
    extra: Annotated[
        list[Path] | None, typer.Option("--extra", help="More folders to index if they exist.")
    ] = None,
) -> None:
    """Index the demo imagery, search it, classify it, and write an HTML report."""
    from skylens.demo import run_demo

    report = run_demo(
        out_dir,
        images=images,
        extra=extra or [],
        log=lambda m: out.print(user_text(m), highlight=False),
    )
    out.print(f"[bold green]report:[/] {user_text(report.resolve())}")
