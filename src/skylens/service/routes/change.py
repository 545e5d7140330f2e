"""``/api/change``: what changed between two dates of one place (``skylens.tasks.change``).

The scan is bounded before it starts (``tasks.budget.check_scan``) and stops when the client
leaves (``run_cancellable``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import Format, get_state, raster_input, run_cancellable
from skylens.service.pictures import answer_json, picture_url
from skylens.service.state import ServiceState
from skylens.tasks.budget import cancellable, check_scan
from skylens.tasks.change import change

router = APIRouter(tags=["change"])
RasterPath = Annotated[
    str | None, Form(description="Server-side raster under a served root.", max_length=4096)
]


@router.post("/change")
async def change_pair(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    before: RasterPath = None,
    after: RasterPath = None,
    before_image: Annotated[UploadFile | None, File(description="Or upload BEFORE.")] = None,
    after_image: Annotated[UploadFile | None, File(description="Or upload AFTER.")] = None,
    tile: Annotated[int, Form(ge=16, le=2048, description="Chip side, pixels.")] = 128,
    picture: Annotated[
        bool, Form(description="Add the change map as a PNG data URL (json only).")
    ] = False,
    format: Annotated[Format, Form(description="json or geojson.")] = "json",
) -> dict:
    """What changed between two dates of one place: regions, m2 areas, classes before -> after."""
    enc = await run_in_threadpool(state.encoder)
    limits = state.scan_limits
    async with raster_input(state, before_image, before, "before") as (b_path, b_label):
        async with raster_input(state, after_image, after, "after") as (a_path, a_label):
            await run_in_threadpool(check_scan, b_path, tile, tile, limits, b_label)
            await run_in_threadpool(check_scan, a_path, tile, tile, limits, a_label)
            result = await run_cancellable(
                request, lambda cancel: change(b_path, a_path, cancellable(enc, cancel), tile=tile)
            )
            png = await picture_url(result.change_map) if picture and format == "json" else None
    names = {str(b_path): b_label, str(a_path): a_label}
    extra = {"change_map_png": png} if png else {}
    return answer_json(result, format, names, extra | {"model": enc.name})
