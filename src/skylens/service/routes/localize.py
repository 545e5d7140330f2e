"""``/api/localize``: where in a scene a phrase applies (``skylens.tasks.localize``).

GET names a server-side scene; POST uploads one. The scan is bounded before it starts
(``tasks.budget.check_scan``: pixels and windows) and stops when the client leaves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import Format, get_state, raster_input, run_cancellable
from skylens.service.pictures import answer_json, picture_url
from skylens.service.state import ServiceState
from skylens.tasks.budget import cancellable, check_scan
from skylens.tasks.localize import check_phrase, localize

router = APIRouter(tags=["localize"])
State = Annotated[ServiceState, Depends(get_state)]
PHRASE = "What to find, in words."
TILE = "Window side, pixels."
STRIDE = "Window step, pixels (at most the tile)."
PICTURE = "Add the heatmap over the scene as a PNG data URL (json)."


@router.get("/localize")
async def localize_phrase(
    request: Request,
    state: State,
    path: Annotated[str, Query(description="Server-side raster under a served root.")],
    phrase: Annotated[str, Query(description=PHRASE, max_length=10_000)],
    tile: Annotated[int, Query(ge=16, le=2048, description=TILE)] = 64,
    stride: Annotated[int, Query(ge=8, le=2048, description=STRIDE)] = 32,
    top: Annotated[int, Query(ge=1, le=100, description="Regions to return.")] = 5,
    picture: Annotated[bool, Query(description=PICTURE)] = False,
    format: Annotated[Format, Query(description="json or geojson.")] = "json",
) -> dict:
    """Where in a server-side scene a phrase applies: best regions (and the heatmap in json)."""
    return await _localized(request, state, None, path, phrase, tile, stride, top, picture, format)


@router.post("/localize")
async def localize_phrase_upload(
    request: Request,
    state: State,
    phrase: Annotated[str, Form(description=PHRASE, max_length=10_000)],
    image: Annotated[UploadFile | None, File(description="Scene to search.")] = None,
    path: Annotated[
        str | None, Form(description="Or a server-side raster under a served root.")
    ] = None,
    tile: Annotated[int, Form(ge=16, le=2048, description=TILE)] = 64,
    stride: Annotated[int, Form(ge=8, le=2048, description=STRIDE)] = 32,
    top: Annotated[int, Form(ge=1, le=100, description="Regions to return.")] = 5,
    picture: Annotated[bool, Form(description=PICTURE)] = False,
    format: Annotated[Format, Form(description="json or geojson.")] = "json",
) -> dict:
    """Where in an uploaded (or server-side) scene a phrase applies."""
    return await _localized(request, state, image, path, phrase, tile, stride, top, picture, format)


async def _localized(request, state, image, path, phrase, tile, stride, top, picture, fmt) -> dict:
    text = check_phrase(phrase)
    enc = await run_in_threadpool(state.encoder)
    async with raster_input(state, image, path, "scene") as (scene, label):
        await run_in_threadpool(check_scan, scene, tile, stride, state.scan_limits, label)
        result = await run_cancellable(
            request,
            lambda cancel: localize(
                scene, text, cancellable(enc, cancel), tile=tile, stride=stride, top=top
            ),
        )
        png = await picture_url(result.heatmap_image) if picture and fmt == "json" else None
    extra = {"heatmap_png": png} if png else {}
    return answer_json(result, fmt, {str(scene): label}, extra | {"model": enc.name})
