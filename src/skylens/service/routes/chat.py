"""``/api/chat``: one turn of a conversation (``skylens.tasks.chat``), kept by session id.

The first turn (no ``session``) opens a session, optionally with a knowledge base under a
served root; every turn may add an image (upload or server-side path). The reply is the turn's
JSON (expert, answer, confidence, citations, GeoJSON geometry) plus the session id.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from skylens.errors import InputError
from skylens.service.dependencies import get_state
from skylens.service.safety import read_upload, resolve_under_roots, saved_upload
from skylens.service.state import ServiceState
from skylens.tasks.chat.store import MAX_IMAGES, ChatSessions

router = APIRouter(tags=["chat"])
State = Annotated[ServiceState, Depends(get_state)]


def chat_sessions(request: Request) -> ChatSessions:
    """The app's chat sessions, created with the first chat request."""
    sessions = getattr(request.app.state, "chat_sessions", None)
    if sessions is None:
        sessions = request.app.state.chat_sessions = ChatSessions()
    return sessions


@router.post("/chat")
async def chat_turn(
    state: State,
    sessions: Annotated[ChatSessions, Depends(chat_sessions)],
    message: Annotated[str, Form(description="The user's turn.", max_length=2000)],
    session: Annotated[
        str | None,
        Form(description="Session id from an earlier reply; none starts one.", max_length=200),
    ] = None,  # fmt: skip
    kb: Annotated[
        str | None,
        Form(
            description="Knowledge-base folder under a served root (new sessions).", max_length=4096
        ),
    ] = None,  # fmt: skip
    image: Annotated[
        UploadFile | None, File(description="An image to add to the conversation.")
    ] = None,  # fmt: skip
    path: Annotated[
        str | None, Form(description="Or a server-side image under a served root.", max_length=4096)
    ] = None,  # fmt: skip
) -> dict:
    """Route the turn to an expert and answer it."""
    if session:
        sid, held = session, sessions.get(session)
    else:
        folder = resolve_under_roots(kb, state.config.roots) if kb else None
        model = await run_in_threadpool(state.encoder)
        sid, held = await run_in_threadpool(lambda: sessions.create(model=model, kb=folder))
    if image is not None or path:
        if len(held.session.images) >= MAX_IMAGES:
            raise InputError(f"a chat session holds at most {MAX_IMAGES} images; start a new one")
        if image is not None:
            name = Path(image.filename or "image").name[:100] or "image"
            data = await read_upload(image, name, state.config.max_upload_bytes)
            with saved_upload(data, name) as tmp:
                kept = held.folder / f"{len(held.session.images)}{tmp.suffix}"
                shutil.copyfile(tmp, kept)
        else:
            kept = resolve_under_roots(path, state.config.roots)
        await run_in_threadpool(held.session.add_image, kept)

    def turn():
        with held.lock:
            return held.session.ask(message)

    result = await run_in_threadpool(turn)
    return {"session": sid, **result.to_dict()}
