"""``/api/kb/search`` and ``/api/kb/ask``: a knowledge base named by a server-side path.

The knowledge base is a folder under a served root (``skylens serve --root``), built with
``skylens kb build``; answers are extractive with numbered citations (``skylens.tasks.rag``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state, raster_input
from skylens.service.safety import resolve_under_roots
from skylens.service.state import ServiceState
from skylens.tasks.rag import answer_question, search_kb

router = APIRouter(tags=["knowledge"])
State = Annotated[ServiceState, Depends(get_state)]
KB = "Knowledge-base folder under a served root (skylens kb build)."


@router.get("/kb/search")
async def kb_search(
    state: State,
    kb: Annotated[str, Query(description=KB, max_length=4096)],
    q: Annotated[str, Query(description="What to look for.", max_length=1000)],
    k: Annotated[int, Query(ge=1, le=50, description="Passages to return.")] = 5,
) -> dict:
    """Hybrid search (BM25 + dense), fused by reciprocal rank and reranked."""
    folder = resolve_under_roots(kb, state.config.roots)
    passages = await run_in_threadpool(search_kb, folder, q, k=k)
    return {"query": q, "passages": [p.to_dict() for p in passages]}


@router.post("/kb/ask")
async def kb_ask(
    state: State,
    kb: Annotated[str, Form(description=KB, max_length=4096)],
    question: Annotated[str, Form(description="A question in English.", max_length=10_000)],
    image: Annotated[
        UploadFile | None, File(description="Optional image the question is about.")
    ] = None,  # fmt: skip
    path: Annotated[
        str | None, Form(description="Or a server-side image under a served root.")
    ] = None,  # fmt: skip
) -> dict:
    """An answer with numbered citations and the passages used, or an honest refusal."""
    folder = resolve_under_roots(kb, state.config.roots)
    if image is None and not path:
        answer = await run_in_threadpool(answer_question, folder, question)
        return answer.to_dict()
    async with raster_input(state, image, path, "query") as (file, _label):
        answer = await run_in_threadpool(answer_question, folder, question, image=file)
    return answer.to_dict()
