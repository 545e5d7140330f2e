"""``/api/health`` (no token), ``/api/index`` and ``/api/models``: what the service holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import get_state
from skylens.service.state import ServiceState

public = APIRouter(prefix="/api", tags=["service"])
router = APIRouter(tags=["index"])
State = Annotated[ServiceState, Depends(get_state)]


@public.get("/health")
async def health(state: State) -> dict:
    """Liveness: always answers, without a token."""
    return {
        "status": "ok",
        "index": state.index is not None,
        "model": state.model_name,
        "token_required": state.config.token is not None,
    }


@router.get("/index")
async def index_stats(state: State) -> dict:
    """What the index holds (rows, sources, model, ANN state, size on disk)."""
    return await run_in_threadpool(state.index_stats)


@router.get("/models", tags=["models"])
async def models(state: State) -> dict:
    """The service's model and the model backends this install knows."""
    return state.models_info()
