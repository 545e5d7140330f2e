"""The skylens REST service: a FastAPI app over the tasks, plus the static web page.

``create_app`` builds the service from a ``ServiceConfig`` (``skylens.service.config``) and mounts
one router per resource (``skylens.service.routes``); the bearer-token check and the service
state are dependencies declared once (``skylens.service.dependencies``). Routes only parse the
request, call a task function (``skylens.tasks``) off the event loop, and format the answer
(``../shared/STYLE.md`` #8, #13). Concurrent text searches are micro-batched
(``skylens.service.batching``) into ``skylens.tasks.search.search_index``, the search path the CLI
and the Python API share.

Every error is JSON ``{"error": {"type": ..., "message": ...}}`` with a 4xx status for bad input
(``skylens.service.errors``), and every response carries the security headers. Uploads and
server-side paths are checked by ``skylens.service.safety``. OpenAPI docs are served at
``/docs`` from local files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from skylens.service.batching import configure_threads
from skylens.service.config import ServiceConfig, config_from_kwargs
from skylens.service.dependencies import require_token
from skylens.service.errors import (
    BodyLimit,
    MessageScrubber,
    SecurityHeaders,
    install_error_handlers,
)
from skylens.service.pictures import SafeJSONResponse
from skylens.service.routes import API, PUBLIC, docs
from skylens.service.routes.page import STATIC_DIR
from skylens.service.safety import MULTIPART_SLACK
from skylens.service.state import ServiceState

# on SIGTERM, requests in flight get this long to finish; then they are cancelled and their
# work stops at its next batch (``run_cancellable``), so the server exits within seconds
SHUTDOWN_GRACE_S = 5.0


def create_app(config: ServiceConfig | Path | str | None = None, /, **settings: object) -> FastAPI:
    """Build the service.

    Args:
        config: a ``ServiceConfig``, or the index folder (None: no index, classification only)
            with the other fields of ``ServiceConfig`` as keyword ``settings``
            (``create_app(index_dir, roots=[...], memory_mb=0)``).

    Raises:
        NotFoundError: the index folder is not an index, or is damaged (the message says so).
        InputError: a setting out of range.
    """
    cfg = config_from_kwargs(config, **settings).resolved()
    if cfg.threads is not None:  # process-wide, before the model loads
        cfg = replace(cfg, parallel_batches=configure_threads(cfg.threads))
    state = ServiceState(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if cfg.warm_start:
            await run_in_threadpool(state.warm_up)
        yield

    app = FastAPI(
        title="skylens",
        summary="Search and classify satellite and aerial imagery, offline.",
        version=_version(),
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    app.state.skylens = state
    install_error_handlers(app, MessageScrubber(cfg.roots, cfg.index))
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(SecurityHeaders)
    for router in PUBLIC:
        app.include_router(router)
    for router in API:
        app.include_router(router, prefix="/api", dependencies=[Depends(require_token)])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs.mount_assets(app)
    return app


def _version() -> str:
    from skylens import __version__

    return __version__
