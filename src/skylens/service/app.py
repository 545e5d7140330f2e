"""The skylens REST service: a FastAPI app over the tasks, plus the static web page.

Routes only parse the request, call a task function (``skylens.tasks``) off the event loop, and
format the answer (``../shared/STYLE.md`` #8). Concurrent text searches are micro-batched
(``skylens.service.batching``). Every ``SkylensError`` becomes a JSON 4xx
``{"error": {"type": ..., "message": ...}}`` with its ``http_status``; request-validation errors
take the same shape, so bad input never yields a 500. Uploads and server-side paths are checked
by ``skylens.service.safety``. OpenAPI docs are served at ``/docs``.

Capabilities a model lacks (captioning with an encoder-only model, or trained parts that are not
installed) answer 422 ``CapabilityError``, which the page shows as "not available". Change and
localize take uploads or server-side paths and can return their pictures inline
(``picture=true``: a PNG data URL, see ``skylens.service.pictures``).
"""

import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from skylens.errors import CapabilityError, InputError, NotFoundError, SkylensError
from skylens.index.memory import DEFAULT_MAX_BYTES, MemoryVectors
from skylens.index.store import MAX_K, ChipIndex, SearchHit
from skylens.models.answerer import check_question
from skylens.models.base import Answerer, Captioner, ImageTextEncoder, Model, available, load
from skylens.service.batching import MicroBatcher, TextBatcher
from skylens.service.chips import chip_thumbnail_png
from skylens.service.pictures import png_data_url, relabel
from skylens.service.safety import (
    AuthError,
    decode_upload,
    format_bytes,
    read_upload,
    resolve_under_roots,
    saved_upload,
    token_matches,
)
from skylens.tasks.ask import ask_image
from skylens.tasks.change import change
from skylens.tasks.classify import Classification, classify_arrays, parse_labels
from skylens.tasks.common import load_scene_rgb
from skylens.tasks.localize import localize
from skylens.tasks.search import (
    SearchResult,
    check_query_text,
    parse_bbox,
    parse_time_range,
    search_image,
    search_vector,
    search_vectors,
)

log = logging.getLogger("skylens.service")

DEFAULT_MAX_UPLOAD = 50 * 2**20  # bytes
MULTIPART_SLACK = 1 << 20  # bytes of form fields and multipart headers allowed beyond the image
NO_INDEX = "no index is loaded: start the service with `skylens serve --index DIR`"
STATIC_DIR = Path(str(files("skylens.service") / "static"))

Format = Literal["json", "geojson"]


# -- request parsing ----------------------------------------------------------------------------
def _error_body(kind: str, message: str) -> dict:
    return {"error": {"type": kind, "message": message}}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path", "header")]
        where = {"query": "query parameter", "body": "form field", "path": "path parameter"}.get(
            str(err.get("loc", ("",))[0]), "field"
        )
        parts.append(f"{where} '{'.'.join(loc) or '?'}': {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# -- app state ----------------------------------------------------------------------------------
class ServiceState:
    """What the routes share: the open index, the lazily loaded model and the text batcher."""

    def __init__(
        self,
        index: ChipIndex | None,
        model_name: str,
        batch_wait_s: float,
        max_batch: int,
        max_searches: int = 4,
        memory_bytes: int = DEFAULT_MAX_BYTES,
        parallel_batches: int = 2,
    ) -> None:
        self.index = index
        # unfiltered text searches are scored in batches against the vectors held in memory
        # (skylens.index.memory); None: every search goes to LanceDB
        self.memory = (
            MemoryVectors(index, max_bytes=memory_bytes)
            if index is not None and memory_bytes > 0
            else None
        )
        # index searches running at once: LanceDB parallelises each query itself, so more than a
        # few at a time only adds contention (bench/load.py measures the capacity)
        self.search_slots = threading.BoundedSemaphore(max_searches)
        self.model_name = model_name
        self._model: Model | None = None
        self._lock = threading.Lock()
        self._stats: tuple[int, dict] | None = None  # (table version, stats)
        self.batcher = TextBatcher(
            lambda texts: self.encoder().encode_texts(texts),
            max_wait_s=batch_wait_s,
            max_batch=max_batch,
        )
        # several batches at once (at least two: one encodes its texts while another multiplies)
        self.searcher: MicroBatcher[tuple[str, int], list] = MicroBatcher(
            self._search_batch,
            max_wait_s=batch_wait_s,
            max_batch=max_batch,
            max_inflight=parallel_batches,
        )

    def model(self) -> Model:
        """The service's model, loaded on first use (call from a worker thread)."""
        with self._lock:
            if self._model is None:
                self._model = load(self.model_name)
            return self._model

    def encoder(self) -> ImageTextEncoder:
        m = self.model()
        m.require(ImageTextEncoder)
        return m  # type: ignore[return-value]

    def search(self, fn, *args, **kwargs):
        """Run an index search in a free search slot (call from a worker thread)."""
        with self.search_slots:
            return fn(*args, **kwargs)

    def _search_batch(self, queries: list[tuple[str, int]]) -> list[list[SearchHit]]:
        """Hits for (text, k) queries: one encoder call, one search of the whole batch."""
        idx = self.require_index()
        enc = self.encoder()
        texts = list(dict.fromkeys(text for text, _ in queries))
        vectors = enc.encode_texts(texts)
        k = max(k for _, k in queries)
        with self.search_slots:
            memory = self.memory
            try:
                hits = search_vectors(idx, vectors, model_version=enc.version, k=k, memory=memory)
            except InputError:
                if memory is None or memory.fits():
                    raise
                log.warning(  # the index grew past the memory limit while serving
                    "%s no longer fits in %d MiB: searching through LanceDB from now on",
                    idx.directory,
                    memory.max_bytes // 2**20,
                )
                self.memory = None
                hits = search_vectors(idx, vectors, model_version=enc.version, k=k)
        row = {text: i for i, text in enumerate(texts)}
        return [hits[row[text]][:k_wanted] for text, k_wanted in queries]

    def warm_up(self) -> None:
        """Load the model and the index's vectors before the first request, then take every
        object alive at that point out of the garbage collector's reach (``gc.freeze``).

        A full collection walks every object the process holds (the modules of torch, LanceDB
        and FastAPI, the model): under load those walks stalled every request in flight every
        few seconds and set the p99 (bench/load.py: p99 2.2x the p50 before, 1.6x after). Frozen objects are never collected, which is what
        objects that live as long as the server want.
        """
        self.model()
        if self.memory is not None:
            try:
                rows = self.memory.load()
                log.info("%d vectors of %s held in memory", rows, self.index.directory)
            except InputError as exc:
                log.warning("%s; text searches go to LanceDB", exc)
                self.memory = None
        gc.collect()
        gc.freeze()

    def index_stats(self) -> dict:
        """``ChipIndex.stats`` of the served index, recomputed only when its table changed.

        The stats read every row's path and walk the folder (~40 ms at 100,000 chips); the web
        page asks for them on every load.
        """
        idx = self.require_index()
        version = idx.version
        cached = self._stats
        if cached is None or cached[0] != version:
            cached = self._stats = (version, idx.stats())
        return cached[1]

    def require_index(self) -> ChipIndex:
        if self.index is None:
            raise NotFoundError(NO_INDEX)
        return self.index


class _BodyLimit:
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
                body = _error_body("UploadTooLargeError", message)
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


# -- the app ------------------------------------------------------------------------------------
def create_app(
    index_dir: Path | None,
    *,
    model: str | None = None,
    roots: Sequence[Path] = (),
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    cors_origins: Sequence[str] = (),
    batch_wait_s: float = 0.005,
    max_batch: int = 64,
    max_searches: int = 4,
    memory_mb: float = DEFAULT_MAX_BYTES / 2**20,
    parallel_batches: int = 2,
    warm_start: bool = False,
) -> FastAPI:
    """Build the service.

    Args:
        index_dir: chip index to search (``skylens index``); None serves classification only.
        model: model name; defaults to the index's model, else ``default``. Loaded on first use.
        roots: folders whose files may be named by server-side ``path`` fields; none by default.
        token: bearer token every ``/api`` route but ``/api/health`` requires; defaults to the
            ``SKYLENS_API_TOKEN`` environment variable; None/empty means no token.
        max_upload_bytes: largest accepted image upload in bytes (default 50 MiB).
        cors_origins: origins allowed cross-origin access; CORS is off when empty.
        batch_wait_s: how long a text query waits to share an encoder call (seconds).
        max_batch: most text queries per encoder call.
        max_searches: index searches run at once; later ones queue (LanceDB parallelises each).
        memory_mb: hold the index's vectors in memory, up to this many MiB, and answer
            unfiltered text searches in exact batches from there (0: always search LanceDB).
        parallel_batches: text-search batches computed at once (``configure_threads`` says
            how many suit the process's threads); later batches wait and grow meanwhile.
        warm_start: at start-up, load the model and the vectors and freeze the garbage
            collector's view of them (``ServiceState.warm_up``), as ``skylens serve`` does; off,
            they load on first use.

    Raises:
        NotFoundError: ``index_dir`` is not an index.
    """
    index = ChipIndex.open(index_dir) if index_dir is not None else None
    model_name = model or (index.model_name if index is not None else "default")
    if max_searches < 1:
        raise InputError(f"max_searches must be at least 1, got {max_searches}")
    if memory_mb < 0:
        raise InputError(f"memory_mb must be >= 0, got {memory_mb}")
    state = ServiceState(
        index,
        model_name,
        batch_wait_s,
        max_batch,
        max_searches,
        int(memory_mb * 2**20),
        parallel_batches,
    )
    token = token if token is not None else os.environ.get("SKYLENS_API_TOKEN")
    token = token or None
    roots = tuple(Path(r) for r in roots)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_start:
            await run_in_threadpool(state.warm_up)
        yield

    app = FastAPI(
        title="skylens",
        summary="Search and classify satellite and aerial imagery, offline.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.skylens = state

    # -- errors: one JSON shape, never a 500 for bad input --------------------------------------
    @app.exception_handler(SkylensError)
    async def _skylens_error(request: Request, exc: SkylensError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse(
            _error_body(type(exc).__name__, str(exc)), status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            _error_body("ValidationError", _validation_message(exc)), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 413: "UploadTooLargeError"}.get(exc.status_code, "HTTPError")
        return JSONResponse(
            _error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(
            _error_body(type(exc).__name__, "internal error; see the server log"), status_code=500
        )

    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(_BodyLimit, limit=max_upload_bytes + MULTIPART_SLACK)

    async def require_token(request: Request) -> None:
        if token is not None and not token_matches(request.headers.get("authorization"), token):
            raise AuthError("this service needs a bearer token: send 'Authorization: Bearer TOKEN'")

    api = [Depends(require_token)]

    async def image_from_request(image: UploadFile | None, path: str | None) -> tuple[object, str]:
        """(RGB array, label) from an upload or a server-side path under the roots."""
        if (image is None) == (not path):
            raise InputError(
                "send exactly one image: an upload (form field 'image') or a server-side 'path'"
            )
        if image is not None:
            name = (image.filename or "image")[:200]
            data = await read_upload(image, name, max_upload_bytes)
            return await run_in_threadpool(decode_upload, data, name), name
        resolved = resolve_under_roots(path, roots)
        return await run_in_threadpool(load_scene_rgb, resolved), str(resolved)

    @asynccontextmanager
    async def raster_from_request(
        upload: UploadFile | None, path: str | None, what: str
    ) -> AsyncIterator[tuple[Path, str]]:
        """(file path, label) of a raster sent as an upload (kept on disk while in use, georeferencing
        intact) or named by a server-side path under the roots."""
        if (upload is None) == (not path):
            raise InputError(
                f"send exactly one {what} raster: an upload or a server-side path under a root"
            )
        if upload is None:
            yield resolve_under_roots(path, roots), str(path)
            return
        name = (upload.filename or what)[:200]
        data = await read_upload(upload, name, max_upload_bytes)
        with saved_upload(data, name) as tmp:
            yield tmp, f"upload '{name}'"

    # async: it only parses, and a sync dependency would cost every search a hop to a thread
    async def search_params(
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of hits.")] = 10,
        bbox: Annotated[str | None, Query(description="W,S,E,N in degrees (EPSG:4326).")] = None,
        after: Annotated[str | None, Query(description="Acquired on or after (ISO 8601).")] = None,
        before: Annotated[
            str | None, Query(description="Acquired on or before (ISO 8601).")
        ] = None,
        source: Annotated[
            str | None, Query(description="Path prefix or glob of source files.")
        ] = None,
    ) -> dict:
        return {
            "k": k,
            "bbox": parse_bbox(bbox),
            "time_range": parse_time_range(after, before),
            "source": source or None,
        }

    def formatted(result: SearchResult, fmt: str) -> JSONResponse:
        if fmt == "geojson":
            return JSONResponse(result.to_geojson(), media_type="application/geo+json")
        return JSONResponse(result.to_dict())

    # -- routes ---------------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    async def health() -> dict:
        """Liveness: always answers, without a token."""
        return {
            "status": "ok",
            "index": state.index is not None,
            "model": state.model_name,
            "token_required": token is not None,
        }

    @app.get("/api/index", tags=["index"], dependencies=api)
    async def index_stats() -> dict:
        """What the index holds (rows, sources, model, ANN state, size on disk)."""
        return await run_in_threadpool(state.index_stats)

    @app.get("/api/models", tags=["models"], dependencies=api)
    async def models() -> dict:
        """The service's model and the model backends this install knows."""
        return {
            "model": state.model_name,
            "loaded": state._model is not None,
            "capabilities": _capabilities(state._model) if state._model is not None else None,
            "index_model": state.index.model_name if state.index is not None else None,
            "backends": [
                {"scheme": b.scheme, "example": b.example, "description": b.description}
                for b in available()
            ],
        }

    @app.get("/api/search", tags=["search"], dependencies=api)
    async def search_by_text(
        q: Annotated[str, Query(description="What to look for, in words.")],
        params: Annotated[dict, Depends(search_params)],
        format: Annotated[Format, Query(description="json or geojson.")] = "json",
    ) -> JSONResponse:
        """Chips that best match a text query (concurrent queries share one encoder call)."""
        idx = state.require_index()
        text = check_query_text(q)
        # loading the model takes seconds: off the event loop, once
        enc = state._model if state._model is not None else await run_in_threadpool(state.encoder)
        if params["bbox"] is None and params["time_range"] is None and params["source"] is None:
            hits = await state.searcher.submit((text, params["k"]))
        else:  # filters: LanceDB evaluates them, one query at a time
            vector = await state.batcher.encode(text)
            hits = await run_in_threadpool(
                state.search, search_vector, idx, vector, model_version=enc.version, **params
            )
        return formatted(SearchResult(text, enc.name, hits), format)

    @app.post("/api/search/image", tags=["search"], dependencies=api)
    async def search_by_image(
        params: Annotated[dict, Depends(search_params)],
        image: Annotated[UploadFile | None, File(description="Example image.")] = None,
        path: Annotated[
            str | None, Form(description="Or a server-side image under a served root.")
        ] = None,
        format: Annotated[Format, Query(description="json or geojson.")] = "json",
    ) -> JSONResponse:
        """Chips most similar to an uploaded example image."""
        idx = state.require_index()
        rgb, label = await image_from_request(image, path)
        enc = await run_in_threadpool(state.encoder)
        result = await run_in_threadpool(state.search, search_image, idx, rgb, model=enc, **params)
        result.query = f"image:{label}"
        return formatted(result, format)

    @app.post("/api/classify", tags=["classify"], dependencies=api)
    async def classify_image(
        labels: Annotated[str, Form(description="Class names, comma-separated.")],
        image: Annotated[UploadFile | None, File(description="Image to classify.")] = None,
        path: Annotated[
            str | None, Form(description="Or a server-side image under a served root.")
        ] = None,
        top: Annotated[int, Form(ge=1, le=100, description="Labels to return.")] = 3,
    ) -> dict:
        """Zero-shot scene classification of one image from class names."""
        names = parse_labels(labels)
        rgb, label = await image_from_request(image, path)
        enc = await run_in_threadpool(state.encoder)
        [(best, scores)] = await run_in_threadpool(
            lambda: classify_arrays(enc, [rgb], names, top=top)
        )
        out = Classification(label, best, scores).to_dict()
        out["model"] = enc.name
        out["classes"] = names
        return out

    @app.post("/api/caption", tags=["caption"], dependencies=api)
    async def caption_image(
        image: Annotated[UploadFile | None, File(description="Image to describe.")] = None,
        path: Annotated[
            str | None, Form(description="Or a server-side image under a served root.")
        ] = None,
        beam: Annotated[int, Form(ge=1, le=8, description="Beam width.")] = 3,
        max_tokens: Annotated[int, Form(ge=1, le=100, description="Longest caption.")] = 40,
    ) -> dict:
        """One sentence describing the image (needs a captioning model; 422 CapabilityError if not)."""
        model = await run_in_threadpool(state.model)
        model.require(Captioner)
        rgb, label = await image_from_request(image, path)
        [text] = await run_in_threadpool(
            _capability_call, model, "captioning", model.caption_images, [rgb], beam=beam,
            max_tokens=max_tokens,
        )  # fmt: skip
        return {"source": label, "caption": text, "model": model.name}

    @app.post("/api/ask", tags=["ask"], dependencies=api)
    async def ask_about_image(
        question: Annotated[str, Form(description="A question about the image.")],
        image: Annotated[UploadFile | None, File(description="Image to ask about.")] = None,
        path: Annotated[
            str | None, Form(description="Or a server-side image under a served root.")
        ] = None,
    ) -> dict:
        """Answer a question about an image with the model's answerer (``skylens.tasks.ask``).

        Kinds the model cannot ground come back ``supported: false`` with the reason.
        """
        q = check_question(question)
        rgb, label = await image_from_request(image, path)
        model = await run_in_threadpool(state.model)
        answer = await run_in_threadpool(
            _capability_call, model, "question answering", ask_image, model, rgb, q
        )
        return answer.to_dict() | {"source": label, "model": model.name}

    @app.post("/api/change", tags=["change"], dependencies=api)
    async def change_pair(
        before: Annotated[
            str | None, Form(description="Server-side raster under a served root.")
        ] = None,
        after: Annotated[
            str | None, Form(description="Server-side raster of the same place, later.")
        ] = None,
        before_image: Annotated[UploadFile | None, File(description="Or upload BEFORE.")] = None,
        after_image: Annotated[UploadFile | None, File(description="Or upload AFTER.")] = None,
        tile: Annotated[int, Form(ge=16, le=2048, description="Chip side, pixels.")] = 128,
        picture: Annotated[
            bool, Form(description="Add the change map as a PNG data URL (json only).")
        ] = False,
        format: Annotated[Format, Form(description="json or geojson.")] = "json",
    ) -> dict:
        """What changed between two dates of one place: regions, m2 areas, classes before -> after."""
        enc = await run_in_threadpool(state.encoder)
        async with raster_from_request(before_image, before, "before") as (b_path, b_label):
            async with raster_from_request(after_image, after, "after") as (a_path, a_label):
                result = await run_in_threadpool(lambda: change(b_path, a_path, enc, tile=tile))
                png = await run_in_threadpool(png_data_url, result.write_png) if picture else None
        names = {str(b_path): b_label, str(a_path): a_label}
        if format == "geojson":
            return relabel(result.to_geojson(), names)
        out = relabel(result.to_dict(), names)
        return out | ({"change_map_png": png} if png else {}) | {"model": enc.name}

    @app.get("/api/localize", tags=["localize"], dependencies=api)
    async def localize_phrase(
        path: Annotated[str, Query(description="Server-side raster under a served root.")],
        phrase: Annotated[str, Query(description="What to find, in words.")],
        tile: Annotated[int, Query(ge=16, le=2048, description="Window side, pixels.")] = 64,
        stride: Annotated[int, Query(ge=8, le=2048, description="Window step, pixels.")] = 32,
        top: Annotated[int, Query(ge=1, le=100, description="Regions to return.")] = 5,
        picture: Annotated[
            bool, Query(description="Add the heatmap over the scene as a PNG data URL (json).")
        ] = False,
        format: Annotated[Format, Query(description="json or geojson.")] = "json",
    ) -> dict:
        """Where in a server-side scene a phrase applies: best regions (and the heatmap in json)."""
        return await localized(None, path, phrase, tile, stride, top, picture, format)

    @app.post("/api/localize", tags=["localize"], dependencies=api)
    async def localize_phrase_upload(
        phrase: Annotated[str, Form(description="What to find, in words.")],
        image: Annotated[UploadFile | None, File(description="Scene to search.")] = None,
        path: Annotated[
            str | None, Form(description="Or a server-side raster under a served root.")
        ] = None,
        tile: Annotated[int, Form(ge=16, le=2048, description="Window side, pixels.")] = 64,
        stride: Annotated[int, Form(ge=8, le=2048, description="Window step, pixels.")] = 32,
        top: Annotated[int, Form(ge=1, le=100, description="Regions to return.")] = 5,
        picture: Annotated[
            bool, Form(description="Add the heatmap over the scene as a PNG data URL (json).")
        ] = False,
        format: Annotated[Format, Form(description="json or geojson.")] = "json",
    ) -> dict:
        """Where in an uploaded (or server-side) scene a phrase applies."""
        return await localized(image, path, phrase, tile, stride, top, picture, format)

    async def localized(image, path, phrase, tile, stride, top, picture, fmt) -> dict:
        enc = await run_in_threadpool(state.encoder)
        async with raster_from_request(image, path, "scene") as (scene, label):
            result = await run_in_threadpool(
                lambda: localize(scene, phrase, enc, tile=tile, stride=stride, top=top)
            )
            png = await run_in_threadpool(png_data_url, result.write_png) if picture else None
        names = {str(scene): label}
        if fmt == "geojson":
            return relabel(result.to_geojson(), names)
        out = relabel(result.to_dict(), names)
        return out | ({"heatmap_png": png} if png else {}) | {"model": enc.name}

    @app.get(
        "/api/chip/{chip_id}/thumbnail.png",
        tags=["index"],
        dependencies=api,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def chip_thumbnail(
        chip_id: str,
        size: Annotated[int, Query(ge=8, le=512, description="Longest side, pixels.")] = 256,
    ) -> Response:
        """A chip's pixels as a PNG thumbnail (read from the source file the index records)."""
        idx = state.require_index()
        png = await run_in_threadpool(chip_thumbnail_png, idx, chip_id, size=size)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    # -- the web page -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _capabilities(model: Model) -> list[str]:
    """Names of the capability protocols ``model`` implements (what the web page can offer)."""
    kinds = (ImageTextEncoder, Captioner, Answerer)
    return [k.__name__ for k in kinds if isinstance(model, k)]


def _capability_call(model: Model, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with a capability whose parts are not installed reported as such.

    A model may declare a capability whose trained parts load on first use (the default model's
    captioner); when those parts are missing the answer is a 422 ``CapabilityError`` naming the
    model, not a 500.
    """
    try:
        return fn(*args, **kwargs)
    except ImportError as exc:
        raise CapabilityError(
            f"model '{model.name}' cannot do {what} in this install: {exc}"
        ) from exc


def _version() -> str:
    try:
        from skylens import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "0"
