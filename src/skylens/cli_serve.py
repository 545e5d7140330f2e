"""``skylens serve``: run the REST service and web page with uvicorn (``pip install skylens[serve]``).

Registered on the main CLI by ``register(app)``; the command only parses options, builds the app
(``skylens.service.create_app``) and hands it to uvicorn (``../shared/STYLE.md`` #8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.errors import MissingDependencyError, SkylensError


def serve(
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Index folder to search (omit to classify only)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[str | None, typer.Option(help="Model name (defaults to the index's).")] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option("--root", help="Folder whose images requests may name by path (repeatable)."),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Origin allowed cross-origin access (repeatable)."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload, MiB.")] = 50.0,
) -> None:
    """Serve the REST API (docs at /docs) and the web page; SKYLENS_API_TOKEN sets a bearer token."""
    try:
        try:
            import uvicorn

            from skylens.service import create_app
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                f"`skylens serve` needs {exc.name}: pip install 'skylens[serve]'"
            ) from None
        if max_upload_mb <= 0:
            raise SkylensError(f"--max-upload-mb must be positive, got {max_upload_mb}")
        app = create_app(
            index,
            model=model,
            roots=root or (),
            cors_origins=cors_origin or (),
            max_upload_bytes=int(max_upload_mb * 2**20),
        )
    except SkylensError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"skylens serving on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``skylens`` Typer app."""
    app.command("serve")(serve)
