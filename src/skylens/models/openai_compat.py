"""``openai:`` backend: any server that speaks the OpenAI chat-completions API.

Ollama (``http://localhost:11434/v1``), vLLM (``vllm serve``, ``http://localhost:8000/v1``),
llama.cpp's ``llama-server`` (``http://localhost:8080/v1``), LM Studio (``http://localhost:1234/v1``)
and the OpenAI service itself. Names: ``openai:BASE_URL[#MODEL]``, e.g.
``openai:http://localhost:11434/v1#llava``; without ``#MODEL`` the server's only model is used (a
server with several asks for one to be named).

Requests go to ``BASE_URL/chat/completions``; an image travels inside the user message as a PNG
``data:`` URL (``{"type": "image_url", "image_url": {"url": ...}}``), so the server needs no access
to the caller's files. :meth:`OpenAICompatModel.generate` uses the plain JSON reply;
:meth:`OpenAICompatModel.stream_generate` asks for a server-sent-event stream and yields the text
deltas as they come.

Failures: a refused connection, HTTP 429 and 5xx are retried with exponential backoff (a
``Retry-After`` header is honoured up to the cap); a reply slower than the timeout, a server still
unreachable after the retries, a body that is not JSON or lacks ``choices[0].message`` gives a
``ModelError`` that names the URL. A server that refuses an image because its model has no vision
gives ``CapabilityError``. Settings (environment): ``SKYLENS_OPENAI_API_KEY`` or ``OPENAI_API_KEY``
(sent as a bearer token when set), ``SKYLENS_OPENAI_TIMEOUT`` (seconds, default 120),
``SKYLENS_OPENAI_RETRIES`` (retries after the first try, default 3), ``SKYLENS_OPENAI_BACKOFF``
(first delay in seconds, default 0.5, doubled per retry up to 8 s).

The client is ``httpx`` rather than the ``openai`` SDK: it is small, pure Python, a core
dependency of skylens (the service and its tests use it too), the wire format needed here is two
endpoints, and owning the request loop lets every failure name the server and map a vision refusal
to ``CapabilityError``, where the SDK would add a dependency tree and its own exception types to translate. ``beam`` in :meth:`caption_images` has no equivalent in the API: replies are greedy
(``temperature`` 0) whatever ``beam`` says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from skylens._lazy import lazy_import
from skylens.errors import CapabilityError, ModelError
from skylens.models.base import Answerer, Captioner, ModelCard, TextGenerator, register_backend
from skylens.models.messages import (
    ANSWER_SUFFIX,
    CAPTION_PROMPT,
    answer_from_reply,
    check_image,
    image_message,
    normalize_messages,
    png_data_url,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_CAP_S = 8.0
_VISION_REFUSAL = re.compile(r"image|vision|multimodal|multi-modal|mmproj", re.I)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ModelError(f"{name}={raw!r}: expected a number") from None
    if value < 0:
        raise ModelError(f"{name}={raw!r}: expected a number >= 0")
    return value


def parse_name(rest: str) -> tuple[str, str | None]:
    """``BASE_URL[#MODEL]`` -> (base URL without a trailing ``/``, model or None)."""
    url, _, model = rest.strip().partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelError(
            f"openai:{rest}: expected openai:BASE_URL[#MODEL] with an http(s) URL, "
            "e.g. openai:http://localhost:11434/v1#llava"
        )
    return url.rstrip("/"), (model.strip() or None)


def _error_text(resp) -> str:
    """The server's own error message, from the usual JSON shapes, else the body's start."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(body)[:300]


def _content_text(content: object) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise TypeError(f"content of type {type(content).__name__}")


class OpenAICompatModel(TextGenerator, Captioner, Answerer):
    """A chat model behind an OpenAI-compatible HTTP server.

    Args:
        base_url: the API root, usually ending in ``/v1``.
        model: the server's model name; None asks the server (it must serve exactly one).
        api_key: bearer token; default from ``SKYLENS_OPENAI_API_KEY`` or ``OPENAI_API_KEY``.
        timeout: seconds to wait for a connection and for each read.
        max_retries: retries after the first try, for refused connections, 429 and 5xx.
        backoff: first retry delay in seconds, doubled per retry up to ``BACKOFF_CAP_S``.
    """

    #: new tokens at most for ``answer``: VQA answers are a word or a short phrase
    answer_max_tokens: int = 32

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        httpx = lazy_import("httpx", "serve")  # a core dependency; the hint covers broken installs
        self.base_url, self._model = base_url.rstrip("/"), model
        self.timeout, self.max_retries, self.backoff = timeout, max(0, int(max_retries)), backoff
        key = (
            api_key or os.environ.get("SKYLENS_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._httpx = httpx
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers)
        name = f"openai:{self.base_url}" + (f"#{model}" if model else "")
        self.card = ModelCard(
            name=name,
            version=hashlib.sha256(name.encode()).hexdigest()[:16],  # the server owns the weights
            image_size=0,  # not an image-text encoder
            embed_dim=0,
            source=self.base_url,
            citation="cite the served model's own paper",
            extra={"base_url": self.base_url, "model": model, "timeout_s": timeout},
        )

    # -- HTTP ------------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, payload: dict | None = None, *, stream: bool = False
    ):
        """Send with retries; return the response (any status), or ``ModelError`` if unreachable."""
        httpx, url = self._httpx, self.base_url + path
        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(BACKOFF_CAP_S, self.backoff * 2**attempt)
            try:
                request = self._client.build_request(method, url, json=payload)
                resp = self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except httpx.TimeoutException:
                raise ModelError(
                    f"{url}: no reply within {self.timeout:g} s (a slow model? raise "
                    "SKYLENS_OPENAI_TIMEOUT)"
                ) from None
            except httpx.HTTPError as exc:
                raise ModelError(f"{url}: request failed ({type(exc).__name__}: {exc})") from None
            else:
                if resp.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                    return resp
                last = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = min(BACKOFF_CAP_S, float(retry_after))
                resp.close()
            if attempt < self.max_retries:
                log.warning(
                    "%s: %s; retry %d of %d in %.2f s",
                    url,
                    last,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise ModelError(
            f"{url}: cannot reach the server after {self.max_retries + 1} tries ({last}); "
            "is it running at that address?"
        )

    def _check(self, resp, url: str, payload: dict | None) -> None:
        """Raise the right error for a non-2xx response."""
        if resp.status_code < 400:
            return
        if resp.is_stream_consumed is False:
            resp.read()
        text = _error_text(resp)
        has_images = payload is not None and any(
            isinstance(m.get("content"), list)
            and any(p.get("type") == "image_url" for p in m["content"])
            for m in payload.get("messages", [])
        )
        if has_images and resp.status_code in (400, 404, 415, 422, 500, 501):
            if _VISION_REFUSAL.search(text):
                raise CapabilityError(
                    f"{url}: model '{payload.get('model')}' cannot take images (server said: "
                    f"{text}); serve a vision-language model (e.g. ollama pull llava)"
                )
        hint = ""
        if resp.status_code in (401, 403):
            hint = "; set SKYLENS_OPENAI_API_KEY (or OPENAI_API_KEY)"
        elif resp.status_code == 404:
            hint = "; does the base URL end in /v1, and does the server have that model?"
        tries = f" after {self.max_retries + 1} tries" if resp.status_code in RETRY_STATUSES else ""
        raise ModelError(f"{url}: HTTP {resp.status_code}{tries}: {text}{hint}")

    def _json(self, resp, url: str) -> object:
        try:
            return resp.json()
        except ValueError:
            raise ModelError(
                f"{url}: the reply is not JSON (is this an OpenAI-compatible API?): "
                f"{resp.text.strip()[:200]!r}"
            ) from None

    # -- models and messages -----------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Model names the server offers (``GET BASE_URL/models``)."""
        url = self.base_url + "/models"
        resp = self._request("GET", "/models")
        self._check(resp, url, None)
        body = self._json(resp, url)
        try:
            return [str(m["id"]) for m in body["data"]]
        except (KeyError, TypeError):
            raise ModelError(
                f"{url}: malformed model list (expected {{'data': [{{'id': ...}}]}}): {str(body)[:200]}"
            ) from None

    @property
    def model(self) -> str:
        """The model name sent with each request (asked of the server once when not given)."""
        if self._model is None:
            names = self.list_models()
            if len(names) != 1:
                raise ModelError(
                    f"{self.base_url}: the server offers {len(names)} models "
                    f"({', '.join(names[:10]) or 'none'}); name one: openai:{self.base_url}#MODEL"
                )
            self._model = names[0]
        return self._model

    def chat_payload(
        self, messages: Sequence[dict], *, max_tokens: int, temperature: float, stream: bool
    ) -> dict:
        """The ``/chat/completions`` request body for skylens ``messages`` (images as data URLs)."""
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be at least 1, got {max_tokens}")
        wire = []
        for m in normalize_messages(messages):
            parts = [
                {"type": "image_url", "image_url": {"url": png_data_url(p["image"])}}
                if p["type"] == "image"
                else p
                for p in m["content"]
            ]
            if all(p["type"] == "text" for p in parts):  # plain strings suit text-only servers
                wire.append({"role": m["role"], "content": "".join(p["text"] for p in parts)})
            else:
                wire.append({"role": m["role"], "content": parts})
        return {
            "model": self.model,
            "messages": wire,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "stream": stream,
        }

    # -- capabilities ------------------------------------------------------------------------
    def generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> str:
        """The assistant's reply to ``messages`` from one non-streaming request.

        Args:
            messages: chat turns (see :mod:`skylens.models.messages`); images need a vision model.
            max_tokens: new tokens at most.
            temperature: 0 for the server's greedy decoding.
        """
        payload = self.chat_payload(
            messages, max_tokens=max_tokens, temperature=temperature, stream=False
        )
        url = self.base_url + "/chat/completions"
        resp = self._request("POST", "/chat/completions", payload)
        self._check(resp, url, payload)
        body = self._json(resp, url)
        try:
            return _content_text(body["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise ModelError(
                f"{url}: malformed reply (no choices[0].message.content): {str(body)[:200]}"
            ) from None

    def stream_generate(
        self, messages: Sequence[dict], *, max_tokens: int = 256, temperature: float = 0.0
    ) -> Iterator[str]:
        """Yield the reply's text deltas as the server streams them (server-sent events).

        Retries happen before the first byte only; a stream that breaks, or an event that is not
        JSON, raises ``ModelError`` naming the URL.
        """
        payload = self.chat_payload(
            messages, max_tokens=max_tokens, temperature=temperature, stream=True
        )
        url = self.base_url + "/chat/completions"
        resp = self._request("POST", "/chat/completions", payload, stream=True)
        try:
            self._check(resp, url, payload)
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": ping"), "event:" lines
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    raise ModelError(f"{url}: malformed stream event {data[:200]!r}") from None
                if isinstance(event, dict) and "error" in event:
                    raise ModelError(f"{url}: the server failed mid-stream: {event['error']}")
                try:
                    choices = event["choices"]
                    delta = (
                        _content_text(choices[0].get("delta", {}).get("content")) if choices else ""
                    )
                except (KeyError, IndexError, TypeError, AttributeError):
                    raise ModelError(
                        f"{url}: malformed stream event (no choices[0].delta): {data[:200]!r}"
                    ) from None
                if delta:
                    yield delta
        except self._httpx.TimeoutException:
            raise ModelError(
                f"{url}: the stream stalled for {self.timeout:g} s (raise SKYLENS_OPENAI_TIMEOUT)"
            ) from None
        except self._httpx.HTTPError as exc:
            raise ModelError(f"{url}: the stream broke ({type(exc).__name__}: {exc})") from None
        finally:
            resp.close()

    def caption_images(
        self, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        """One caption per RGB uint8 image, one request each (``beam`` has no API equivalent)."""
        arrays = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        return [
            self.generate(image_message(im, CAPTION_PROMPT), max_tokens=max_tokens) for im in arrays
        ]

    def answer(self, image: np.ndarray, question: str):
        """Answer ``question`` about an RGB uint8 image -> ``skylens.models.answerer.Answer``."""
        from skylens.models.answerer import check_question

        q = check_question(question)
        msgs = image_message(check_image(image), q + ANSWER_SUFFIX)
        reply = self.generate(msgs, max_tokens=self.answer_max_tokens)
        return answer_from_reply(q, reply, self.name)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


@register_backend(
    "openai",
    "any OpenAI-compatible server: Ollama, vLLM, llama.cpp server, LM Studio (text and images)",
    "openai:http://localhost:11434/v1#llava",
)
def load_openai(rest: str) -> OpenAICompatModel:
    """``openai:BASE_URL[#MODEL]`` with timeout, retries and backoff from the environment.

    Loading sends nothing: the server is first contacted by the first request.
    """
    base_url, model = parse_name(rest)
    return OpenAICompatModel(
        base_url,
        model,
        timeout=_env_float("SKYLENS_OPENAI_TIMEOUT", 120.0),
        max_retries=int(_env_float("SKYLENS_OPENAI_RETRIES", 3)),
        backoff=_env_float("SKYLENS_OPENAI_BACKOFF", 0.5),
    )
