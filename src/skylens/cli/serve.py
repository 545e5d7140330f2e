"""``skylens serve``: run the REST service and web page with uvicorn (``pip install skylens[serve]``).

The command only parses options, builds the app
(``skylens.service.create_app``) and hands it to uvicorn (``../shared/STYLE.md`` #8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens._lazy import lazy_import
from skylens.cli.common import friendly
from skylens.errors import InputError

app = typer.Typer()


@app.command("serve")
@friendly
def serve(
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Index folder to search (omit to classify only)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port (1-65535).")] = 8000,
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
    memory_mb: Annotated[
        float,
        typer.Option(
            help="Hold the index's vectors in memory up to this many MiB and answer text "
            "searches in exact batches (0: search LanceDB only)."
        ),
    ] = 2048.0,
    threads: Annotated[
        int,
        typer.Option(
            help="CPU threads per model call. 1 (default) runs one batch of requests per core, "
            "best under load; raise it when one user runs large change or localize jobs."
        ),
    ] = 1,
) -> None:
    """Serve the REST API (docs at /docs) and the web page; SKYLENS_API_TOKEN sets a bearer token."""
    uvicorn = lazy_import("uvicorn", "serve")
    lazy_import("fastapi", "serve")
    from skylens.service import create_app
    from skylens.service.app import SHUTDOWN_GRACE_S as GRACE_S
    from skylens.service.batching import configure_threads

    if max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if memory_mb < 0:
        raise InputError(f"--memory-mb must be 0 or more, got {memory_mb}")
    if threads < 1:
        raise InputError(f"--threads must be 1 or more, got {threads}")
    parallel_batches = configure_threads(threads)
    app = create_app(
        index,
        model=model,
        roots=root or (),
        cors_origins=cors_origin or (),
        max_upload_bytes=int(max_upload_mb * 2**20),
        memory_mb=memory_mb,
        parallel_batches=parallel_batches,
        warm_start=True,  # the model and vectors load before the first request is accepted
    )
    typer.echo(f"skylens serving on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=GRACE_S)
