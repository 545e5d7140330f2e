"""``/api/chip/{chip_id}/thumbnail.png``: a chip's pixels (``skylens.tasks.chips``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state
from skylens.service.state import ServiceState
from skylens.tasks.chips import chip_thumbnail_png

router = APIRouter(tags=["index"])


@router.get(
    "/chip/{chip_id}/thumbnail.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def chip_thumbnail(
    state: Annotated[ServiceState, Depends(get_state)],
    chip_id: Annotated[str, Path(description="Chip id, as search returns it.", max_length=64)],
    size: Annotated[int, Query(ge=8, le=512, description="Longest side, pixels.")] = 256,
) -> Response:
    """A chip's pixels as a PNG thumbnail (read from the source file the index records)."""
    idx = state.require_index()
    png = await run_in_threadpool(chip_thumbnail_png, idx, chip_id, size=size)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})
