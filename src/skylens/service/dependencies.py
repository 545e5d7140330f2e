"""Dependencies the routers share, declared once: the service state, the bearer token, the
search filters, and the parsing of an image or raster sent as an upload or a server-side path.

Work that may run long (change, localize) goes through ``run_cancellable``: it runs in a worker
thread and stops at its next batch when the client disconnects or the server shuts down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from fastapi import File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.errors import InputError
from skylens.service.errors import ClientGone
from skylens.service.safety import (
    AuthError,
    decode_upload,
    read_upload,
    resolve_under_roots,
    saved_upload,
    token_matches,
)
from skylens.service.state import ServiceState
from skylens.tasks.common import load_scene_rgb
from skylens.tasks.search import MAX_K, SearchFilters

Format = Literal["json", "geojson"]
T = TypeVar("T")
DISCONNECT_POLL_S = 0.25  # how often a long request checks whether its client is still there


def state_of(request: Request) -> ServiceState:
    """The app's ``ServiceState`` (set by ``create_app``)."""
    return request.app.state.skylens


# async: FastAPI runs a sync dependency in a worker thread: a thread hop on every request
# (bench/load.py measured the server CPU per search before and after)
async def get_state(request: Request) -> ServiceState:
    """The service state, as a dependency of the routes."""
    return state_of(request)


async def require_token(request: Request) -> None:
    """401 unless the request carries the configured bearer token (when one is configured)."""
    token = state_of(request).config.token
    if token is not None and not token_matches(request.headers.get("authorization"), token):
        raise AuthError("this service needs a bearer token: send 'Authorization: Bearer TOKEN'")


# async: it only parses, and a sync dependency would cost every search a hop to a thread
async def search_filters(
    bbox: Annotated[str | None, Query(description="W,S,E,N in degrees (EPSG:4326).")] = None,
    after: Annotated[str | None, Query(description="Acquired on or after (ISO 8601).")] = None,
    before: Annotated[str | None, Query(description="Acquired on or before (ISO 8601).")] = None,
    source: Annotated[
        str | None, Query(description="Path prefix or glob of source files.", max_length=1000)
    ] = None,
) -> SearchFilters:
    return SearchFilters.parse(bbox, after, before, source)


HitCount = Annotated[int, Query(ge=1, le=MAX_K, description="Number of hits.")]
PathForm = Annotated[
    str | None, Form(description="Or a server-side image under a served root.", max_length=4096)
]


async def image_input(
    request: Request,
    image: Annotated[UploadFile | None, File(description="The image.")] = None,
    path: PathForm = None,
) -> tuple[object, str]:
    """(RGB array, label) of the image a request sends: an upload (form field ``image``) or a
    server-side ``path`` under the served roots."""
    state = state_of(request)
    if (image is None) == (not path):
        raise InputError(
            "send exactly one image: an upload (form field 'image') or a server-side 'path'"
        )
    if image is not None:
        name = (image.filename or "image")[:200]
        data = await read_upload(image, name, state.config.max_upload_bytes)
        return await run_in_threadpool(decode_upload, data, name), name
    resolved = resolve_under_roots(path, state.config.roots)
    return await run_in_threadpool(load_scene_rgb, resolved), Path(path).name[:200]


@asynccontextmanager
async def raster_input(
    state: ServiceState, upload: UploadFile | None, path: str | None, what: str
) -> AsyncIterator[tuple[Path, str]]:
    """(file path, label) of a raster sent as an upload (kept on disk while in use, so its
    georeferencing stays intact) or named by a server-side path under the roots."""
    if (upload is None) == (not path):
        raise InputError(
            f"send exactly one {what} raster: an upload or a server-side path under a root"
        )
    if upload is None:
        yield resolve_under_roots(path, state.config.roots), Path(path).name[:200]
        return
    name = (upload.filename or what)[:200]
    data = await read_upload(upload, name, state.config.max_upload_bytes)
    with saved_upload(data, name) as tmp:
        yield tmp, f"upload '{name}'"


async def run_cancellable(request: Request, fn: Callable[[threading.Event], T]) -> T:
    """``fn(cancel)`` in a worker thread; ``cancel`` is set when the client disconnects or this
    coroutine is cancelled (server shutdown), and the tasks stop at their next batch.

    Raises:
        ClientGone: the client left (nobody is waiting for an answer).
    """
    cancel = threading.Event()
    job = asyncio.ensure_future(run_in_threadpool(fn, cancel))
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=DISCONNECT_POLL_S)
            if done:
                return job.result()
            if await request.is_disconnected():
                cancel.set()
                raise ClientGone(request.url.path)
    finally:
        cancel.set()
