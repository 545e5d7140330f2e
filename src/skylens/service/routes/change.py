"""``/api/change``: what changed between two dates of one place (``skylens.tasks.change``).

The scan is bounded before it starts (``tasks.budget.check_scan``) and stops when the client
leaves (``run_cancellable``).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import Format, get_state, raster_input, run_cancellable
from skylens.service.pictures import answer_json, picture_url
from skylens.service.state import ServiceState
from skylens.tasks.budget import cancellable, check_scan
from skylens.tasks.change import ChangeSession

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
    question: Annotated[
        str | None,
        Form(
            description="A follow-up question about the change (answered from the evidence).",
            max_length=2000,
        ),
    ] = None,
) -> dict:
    """What changed between two dates of one place: regions, m2 areas, classes before -> after.

    With ``picture``, the JSON also holds BEFORE and AFTER and the predicted change over AFTER
    as PNG data URLs; with ``question``, the answer (``ChangeSession.ask``)."""
    enc = await run_in_threadpool(state.encoder)
    limits = state.scan_limits
    async with raster_input(state, before_image, before, "before") as (b_path, b_label):
        async with raster_input(state, after_image, after, "after") as (a_path, a_label):
            await run_in_threadpool(check_scan, b_path, tile, tile, limits, b_label)
            await run_in_threadpool(check_scan, a_path, tile, tile, limits, a_label)
            session = await run_cancellable(
                request,
                lambda cancel: ChangeSession(b_path, a_path, cancellable(enc, cancel), tile=tile),
            )
            result = session.result
            extra = {}
            if question:
                extra["answer"] = (await run_in_threadpool(session.ask, question)).to_dict()
            if picture and format == "json":
                extra["change_map_png"] = await picture_url(result.change_map)
                for side, path in (("before_png", b_path), ("after_png", a_path)):
                    extra[side] = await picture_url(partial(scene_picture, path))
    names = {str(b_path): b_label, str(a_path): a_label}
    return answer_json(result, format, names, extra | {"model": enc.name})


def scene_picture(path, *, max_side: int):
    """A raster as a PIL image of at most ``max_side`` px (``tasks.common.load_scene_rgb``)."""
    from PIL import Image

    from skylens.tasks.common import load_scene_rgb

    return Image.fromarray(load_scene_rgb(path, max_side=max_side))
