"""A small OpenAI-compatible chat server for testing the ``openai:`` backend on loopback.

Run: ``python tests/servers/openai_server.py --port 8123``. Endpoints:

* ``GET /v1/models``: two models, ``echo-vision`` (takes images) and ``echo-text`` (refuses them
  with HTTP 400, the way text-only models on vLLM or llama.cpp's server do);
* ``POST /v1/chat/completions``: the reply is ``echo: <last user text> | images: <n> [<w>x<h>,
  ...] | max_tokens: <m>``, where the sizes are read back from the decoded image data URLs, so a
  test can see exactly what the client sent. ``"stream": true`` sends the same reply word by word
  as server-sent events ending in ``data: [DONE]``;
* ``POST /control``: switches for the next requests: ``fail_next`` (answer that many requests with
  ``fail_status``, default 503, then recover), ``delay`` (seconds before each reply), ``malformed``
  (``"not-json"``, ``"no-choices"``, ``"bad-event"``; ``"empty"`` replies ""), ``api_key`` (require this bearer token);
  ``POST /control`` with ``{}`` resets. ``GET /control`` returns the counters (requests seen).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from PIL import Image

MODELS = ("echo-vision", "echo-text")
DEFAULTS = {"fail_next": 0, "fail_status": 503, "delay": 0.0, "malformed": "", "api_key": ""}

app = FastAPI()
state: dict = {**DEFAULTS, "requests": 0, "failed": 0}


def _image_size(url: str) -> str:
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        return "not-a-data-url"
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return f"{im.width}x{im.height}"


def _reply_text(body: dict) -> tuple[str, int]:
    """The deterministic reply and the number of images in the last user message."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    if isinstance(content, str):
        text, sizes = content, []
    else:
        text = " ".join(p["text"] for p in content if p.get("type") == "text")
        sizes = [
            _image_size(p["image_url"]["url"]) for p in content if p.get("type") == "image_url"
        ]
    listed = f" [{', '.join(sizes)}]" if sizes else ""
    reply = f"echo: {text} | images: {len(sizes)}{listed} | max_tokens: {body.get('max_tokens')}"
    return reply, len(sizes)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)


async def _gate(request: Request) -> JSONResponse | None:
    """Count the request; apply the failure switches."""
    state["requests"] += 1
    if state["api_key"] and request.headers.get("authorization") != f"Bearer {state['api_key']}":
        return _error(401, "invalid api key")
    if state["fail_next"] > 0:
        state["fail_next"] -= 1
        state["failed"] += 1
        return _error(state["fail_status"], "temporarily overloaded")
    if state["delay"]:
        await asyncio.sleep(state["delay"])
    return None


@app.get("/v1/models")
async def models(request: Request):
    if (refused := await _gate(request)) is not None:
        return refused
    return {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}


@app.post("/v1/chat/completions")
async def chat(request: Request):
    if (refused := await _gate(request)) is not None:
        return refused
    body = await request.json()
    if body.get("model") not in MODELS:
        return _error(404, f"model '{body.get('model')}' not found")
    reply, n_images = _reply_text(body)
    if n_images and body["model"] == "echo-text":
        return _error(400, f"model '{body['model']}' does not support image input")
    if state["malformed"] == "not-json":
        return PlainTextResponse("<html>502 bad gateway</html>")
    if state["malformed"] == "empty":
        reply = ""
    if state["malformed"] == "no-choices":
        return {"id": "x", "object": "chat.completion", "result": reply}
    if not body.get("stream"):
        return {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
        }

    async def events():
        yield ": keep-alive comment\n\n"
        words = reply.split(" ")
        for i, word in enumerate(words):
            if state["malformed"] == "bad-event" and i == 2:
                yield "data: {not json\n\n"
                return
            delta = {"content": word + (" " if i < len(words) - 1 else "")}
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        done = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield f"data: {json.dumps(done)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/control")
async def control(request: Request):
    body = await request.json()
    if not body:
        state.update(DEFAULTS, requests=0, failed=0)
    else:
        state.update({k: v for k, v in body.items() if k in DEFAULTS})
    return {k: state[k] for k in (*DEFAULTS, "requests", "failed")}


@app.get("/control")
async def counters():
    return {k: state[k] for k in (*DEFAULTS, "requests", "failed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
