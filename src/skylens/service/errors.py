"""One JSON error shape for every failure, and the middleware every response passes through.

Every ``SkylensError`` becomes ``{"error": {"type": ..., "message": ...}}`` with its
``http_status``; request-validation errors and Starlette's HTTP errors take the same shape, so
bad input never yields a 500 or a traceback. Messages never show the server's paths: the served
roots, the index folder and temporary upload files are replaced by neutral names
(``scrub_message``). Every response carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY`` and a same-origin ``Content-Security-Policy``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from skylens.errors import SkylensError
from skylens.service.safety import AuthError, format_bytes

log = logging.getLogger("skylens.service")

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
)
_TEMP_NAME = re.compile(r"[^\s'\"]*skylens-(?:upload|picture)-[^\s'\"/]*")


def error_body(kind: str, message: str) -> dict:
    return {"error": {"type": kind, "message": message}}


class MessageScrubber:
    """Replaces server paths in error messages: each root by ``<root>``, the index folder by
    ``<index>``, temporary files by ``<upload>``, the temp folder by ``<tmp>``."""

    def __init__(self, roots: Iterable[Path], index: Path | None) -> None:
        pairs = [(str(Path(r).resolve()), "<root>") for r in roots]
        pairs += [(str(Path(r)), "<root>") for r in roots]
        if index is not None:
            pairs += [(str(Path(index).resolve()), "<index>"), (str(Path(index)), "<index>")]
        pairs.append((tempfile.gettempdir(), "<tmp>"))
        # longest first, so a root inside the temp folder is named as the root
        self.pairs = sorted(
            {p for p in pairs if p[0] not in ("", ".", "/")}, key=lambda p: -len(p[0])
        )

    def __call__(self, message: str) -> str:
        message = _TEMP_NAME.sub("<upload>", message)
        for old, new in self.pairs:
            message = message.replace(old, new)
        return message


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path", "header")]
        where = {"query": "query parameter", "body": "form field", "path": "path parameter"}.get(
            str(err.get("loc", ("",))[0]), "field"
        )
        msg = str(err.get("msg", "invalid"))[:300]
        parts.append(f"{where} '{'.'.join(loc)[:100] or '?'}': {msg}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, scrub: MessageScrubber) -> None:
    """Register the handlers that give every error the one JSON shape."""

    async def skylens_error(request: Request, exc: SkylensError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse(
            error_body(type(exc).__name__, scrub(str(exc))),
            status_code=exc.http_status,
            headers=headers,
        )

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("ValidationError", scrub(_validation_message(exc))), status_code=422
        )

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 413: "UploadTooLargeError"}.get(exc.status_code, "HTTPError")
        return JSONResponse(
            error_body(kind, scrub(str(exc.detail))),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def client_gone(request: Request, exc: ClientGone) -> Response:
        log.info("client left during %s: its work was cancelled", request.url.path)
        return Response(status_code=499)  # nobody reads it (nginx's "client closed request")

    app.add_exception_handler(SkylensError, skylens_error)
    app.add_exception_handler(ClientGone, client_gone)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class ClientGone(Exception):
    """The client disconnected while its request was being computed."""


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, errors included.

    It also answers an unexpected exception with the JSON 500 of the one error shape (logged
    with its traceback on the server, never sent), inside the app so the headers still apply
    and the keep-alive connection survives.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unexpected error on %s", scope.get("path"))
            if started:
                raise
            body = error_body("InternalError", "internal error; see the server log")
            await JSONResponse(body, status_code=500)(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes while they stream in (413)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        message = (
            f"request body is larger than the {format_bytes(self.limit)} limit; "
            "send a smaller image"
        )
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                body = error_body("UploadTooLargeError", message)
                await JSONResponse(body, status_code=413)(scope, receive, send)
                return
        seen = 0

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:  # HTTPException passes FastAPI's body parsing as is
                    raise StarletteHTTPException(413, detail=message)
            return msg

        await self.app(scope, limited_receive, send)
