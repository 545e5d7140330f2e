"""``/api/classify``: zero-shot scene classification of one image (``skylens.tasks.classify``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state, image_input
from skylens.service.state import ServiceState
from skylens.tasks.classify import classify_images, parse_labels

router = APIRouter(tags=["classify"])


@router.post("/classify")
async def classify(
    state: Annotated[ServiceState, Depends(get_state)],
    labels: Annotated[str, Form(description="Class names, comma-separated.", max_length=100_000)],
    image: Annotated[tuple, Depends(image_input)],
    top: Annotated[int, Form(ge=1, le=100, description="Labels to return.")] = 3,
) -> dict:
    """Which of the given class names fits the image best (probabilities in [0, 1])."""
    names = parse_labels(labels)
    rgb, label = image
    enc = await run_in_threadpool(state.encoder)
    [result] = await run_in_threadpool(
        lambda: classify_images(enc, [rgb], names, sources=[label], top=top)
    )
    return result.to_dict() | {"model": enc.name, "classes": names}
