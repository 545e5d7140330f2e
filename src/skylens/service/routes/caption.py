"""``/api/caption``: one sentence describing an image (``skylens.tasks.caption``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state, image_input
from skylens.service.state import ServiceState
from skylens.tasks.caption import caption_arrays

router = APIRouter(tags=["caption"])


@router.post("/caption")
async def caption(
    state: Annotated[ServiceState, Depends(get_state)],
    image: Annotated[tuple, Depends(image_input)],
    beam: Annotated[int, Form(ge=1, le=8, description="Beam width.")] = 3,
    max_tokens: Annotated[int, Form(ge=1, le=100, description="Longest caption.")] = 40,
) -> dict:
    """One sentence describing the image (needs a captioning model; 422 CapabilityError if not)."""
    model = await run_in_threadpool(state.model)
    rgb, label = image
    [text] = await run_in_threadpool(caption_arrays, model, [rgb], beam=beam, max_tokens=max_tokens)
    return {"source": label, "caption": text, "model": model.name}
