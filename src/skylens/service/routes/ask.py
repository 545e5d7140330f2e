"""``/api/ask``: answer a question about an image (``skylens.tasks.ask``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state, image_input
from skylens.service.state import ServiceState
from skylens.tasks.ask import ask_image, check_question

router = APIRouter(tags=["ask"])


@router.post("/ask")
async def ask(
    state: Annotated[ServiceState, Depends(get_state)],
    question: Annotated[str, Form(description="A question about the image.", max_length=10_000)],
    image: Annotated[tuple, Depends(image_input)],
) -> dict:
    """Answer a question about an image with the model's answerer.

    Kinds the model cannot ground come back ``supported: false`` with the reason.
    """
    q = check_question(question)
    rgb, label = image
    model = await run_in_threadpool(state.model)
    answer = await run_in_threadpool(ask_image, model, rgb, q)
    return answer.to_dict() | {"source": label, "model": model.name}
