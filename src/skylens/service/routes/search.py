"""``/api/search`` (text) and ``/api/search/image`` (example image): ``skylens.tasks.search``.

Text queries are micro-batched by the service state and answered by ``search_index``, the one
search path the CLI and the Python API use too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from skylens.service.dependencies import (
    Format,
    HitCount,
    get_state,
    image_input,
    search_filters,
)
from skylens.service.pictures import SafeJSONResponse
from skylens.service.state import ServiceState
from skylens.tasks.search import SearchFilters, SearchResult, check_query_text, search_image

router = APIRouter(tags=["search"])
State = Annotated[ServiceState, Depends(get_state)]
Filters = Annotated[SearchFilters, Depends(search_filters)]
FormatQuery = Annotated[Format, Query(description="json or geojson.")]


def formatted(result: SearchResult, fmt: str) -> SafeJSONResponse:
    if fmt == "geojson":
        return SafeJSONResponse(result.to_geojson(), media_type="application/geo+json")
    return SafeJSONResponse(result.to_dict())


@router.get("/search")
async def search_by_text(
    state: State,
    q: Annotated[str, Query(description="What to look for, in words.", max_length=10_000)],
    filters: Filters,
    k: HitCount = 10,
    format: FormatQuery = "json",
) -> SafeJSONResponse:
    """Chips that best match a text query (concurrent queries share one encoder call)."""
    state.require_index()
    text = check_query_text(q)
    if not state.model_loaded:  # loading takes seconds: off the event loop, once
        await run_in_threadpool(state.encoder)
    return formatted(await state.search_text(text, k, filters), format)


@router.post("/search/image")
async def search_by_image(
    state: State,
    filters: Filters,
    image: Annotated[tuple, Depends(image_input)],
    k: HitCount = 10,
    format: FormatQuery = "json",
) -> SafeJSONResponse:
    """Chips most similar to an example image (an upload or a server-side path)."""
    idx = state.require_index()
    rgb, label = image
    enc = await run_in_threadpool(state.encoder)
    result = await run_in_threadpool(
        state.run_search, search_image, idx, rgb, model=enc, k=k, filters=filters, label=label
    )
    return formatted(result, format)
