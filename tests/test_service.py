"""The REST service through its HTTP face, offline, with the fake colour encoder (conftest.py).

A tiny index of three flat-colour PNGs and one georeferenced, dated GeoTIFF is built once per
module; every test talks to ``create_app`` through Starlette's TestClient (or httpx's ASGI
transport where requests must share one event loop).
"""

import asyncio
import base64
import dataclasses
import io
import os
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.transform import from_origin
from typer.testing import CliRunner

import skylens
from skylens.errors import CapabilityError
from skylens.index.ingest import ingest
from skylens.index.store import ChipIndex
from skylens.models.answerer import Answer
from skylens.models.base import Answerer, Captioner, register_backend, unregister_backend
from skylens.service import create_app
from skylens.service.batching import TextBatcher
from skylens.service.safety import resolve_under_roots, sniff_image, token_matches

COL = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (20, 30, 210)}


def _png_bytes(colour: str, size: int = 40) -> bytes:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = COL[colour]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _blue_geotiff(path: Path) -> Path:
    """48x48 blue uint8 GeoTIFF, UTM 32618 near 36.1 N, 75 W; the name dates it 2020-06-15."""
    arr = np.zeros((3, 48, 48), np.uint8)
    arr[:] = np.array(COL["blue"], np.uint8)[:, None, None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=48,
        height=48,
        count=3,
        dtype="uint8",
        crs="EPSG:32618",
        transform=from_origin(500000, 4000000, 10, 10),
    ) as dst:
        dst.write(arr)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("archive")
    for c in COL:
        (d / f"{c}.png").write_bytes(_png_bytes(c))
    _blue_geotiff(d / "scene_20200615.tif")
    return d


@pytest.fixture(scope="module")
def index_dir(archive, tmp_path_factory) -> Path:
    enc = skylens.load("fake")
    d = tmp_path_factory.mktemp("svc") / "index"
    idx = ChipIndex.create_or_open(
        d, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
    )
    report = ingest([archive], idx, enc, size=256, overlap=0)
    assert report.chips_added == 4 and not report.failed
    return d


@pytest.fixture(scope="module")
def client(index_dir, archive) -> TestClient:
    return TestClient(create_app(index_dir, roots=[archive], token=""))


def _error(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    return body["error"]


# -- search -------------------------------------------------------------------------------------
def test_health_and_index_stats(client):
    assert client.get("/api/health").json()["index"] is True
    stats = client.get("/api/index").json()
    assert stats["rows"] == 4 and stats["model"] == "fake"


def test_warm_start_loads_model_and_vectors_before_the_first_request(index_dir):
    import gc

    app = create_app(index_dir, token="", warm_start=True)
    state = app.state.skylens
    assert state._model is None and state.memory.loads == 0  # nothing before start-up
    try:
        with TestClient(app) as c:  # runs the lifespan: start-up happens here
            assert state._model is not None and state.memory.loads == 1
            assert gc.get_freeze_count() > 0
            hits = c.get("/api/search", params={"q": "red"}).json()["hits"]
            assert hits and state.memory.loads == 1  # the first search reused them
    finally:
        gc.unfreeze()  # a test process is not a server: let later tests collect as usual


def test_warm_start_with_vectors_over_the_limit_serves_from_lancedb(index_dir, caplog):
    import gc

    app = create_app(index_dir, token="", warm_start=True, memory_mb=1e-6)
    try:
        with TestClient(app) as c:
            assert app.state.skylens.memory is None
            assert "text searches go to LanceDB" in caplog.text
            assert c.get("/api/search", params={"q": "red"}).json()["hits"]
    finally:
        gc.unfreeze()


def test_index_stats_are_recomputed_only_when_the_index_changed(tmp_path, monkeypatch):
    enc = skylens.load("fake")
    d = tmp_path / "index"
    ChipIndex.create_or_open(
        d, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
    )
    c = TestClient(create_app(d, token=""))
    calls = []
    real = ChipIndex.stats
    monkeypatch.setattr(ChipIndex, "stats", lambda self: calls.append(1) or real(self))
    assert c.get("/api/index").json()["rows"] == 0
    assert c.get("/api/index").json()["rows"] == 0
    assert len(calls) == 1  # the second answer came from the cache
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "red.png").write_bytes(_png_bytes("red"))
    ingest([archive], ChipIndex.open(d), enc, size=256, overlap=0)  # as another process would
    assert c.get("/api/index").json()["rows"] == 1
    assert len(calls) == 2


@pytest.mark.parametrize("colour", ["red", "green"])
def test_text_search_ranks_the_right_colour_first(client, colour):
    body = client.get("/api/search", params={"q": colour, "k": 4}).json()
    assert body["query"] == colour and body["model"] == "fake"
    assert len(body["hits"]) == 4
    assert Path(body["hits"][0]["path"]).name == f"{colour}.png"
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_geojson_with_bbox_and_time_filters(client):
    resp = client.get(
        "/api/search",
        params={"q": "blue", "format": "geojson", "bbox": "-76,35,-74,37", "after": "2020-01-01"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/geo+json")
    fc = resp.json()
    assert fc["type"] == "FeatureCollection" and fc["properties"]["query"] == "blue"
    [feature] = fc["features"]
    assert feature["geometry"]["type"] == "Polygon"
    assert Path(feature["properties"]["path"]).name == "scene_20200615.tif"
    lon, lat = feature["geometry"]["coordinates"][0][0]
    assert -76 < lon < -74 and 35 < lat < 37
    # the same query before the scene's date finds nothing
    none = client.get("/api/search", params={"q": "blue", "before": "2019-12-31"}).json()
    assert none["hits"] == []


def test_source_filter(client, archive):
    body = client.get("/api/search", params={"q": "red", "source": "*green.png"}).json()
    assert [Path(h["path"]).name for h in body["hits"]] == ["green.png"]


def test_image_upload_search(client):
    files = {"image": ("query.png", _png_bytes("green", 24), "image/png")}
    body = client.post("/api/search/image", files=files, params={"k": 2}).json()
    assert body["query"] == "image:query.png"
    assert Path(body["hits"][0]["path"]).name == "green.png" and len(body["hits"]) == 2
    fc = client.post("/api/search/image", files=files, params={"format": "geojson", "k": 1}).json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1


# -- classify -----------------------------------------------------------------------------------
def test_classify_upload(client):
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    resp = client.post("/api/classify", files=files, data={"labels": "red, green, blue", "top": 2})
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["source"] == "leaf.png" and body["labels"][0] == "green"
    assert len(body["labels"]) == 2 and body["scores"][0] > body["scores"][1]
    assert body["classes"] == ["red", "green", "blue"]


def test_classify_server_side_path_only_under_roots(client, archive, tmp_path):
    ok = client.post("/api/classify", data={"labels": "red,green,blue", "path": "blue.png"})
    assert ok.status_code == 200 and ok.json()["labels"][0] == "blue"
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png_bytes("red"))
    for path in ["../" * 6 + str(outside).lstrip("/"), str(outside), f"{archive}/../x.png"]:
        err = _error(client.post("/api/classify", data={"labels": "a,b", "path": path}), 403)
        assert err["type"] == "PathNotAllowedError"
    both = client.post(
        "/api/classify",
        data={"labels": "a,b", "path": "red.png"},
        files={"image": ("x.png", _png_bytes("red"), "image/png")},
    )
    assert "exactly one" in _error(both, 400)["message"]
    neither = client.post("/api/classify", data={"labels": "a,b"})
    assert "exactly one" in _error(neither, 400)["message"]
    err = _error(client.post("/api/classify", data={"labels": "a,b", "path": "red\x00.png"}), 403)
    assert "NUL" in err["message"]


def test_server_side_paths_off_without_roots(index_dir):
    c = TestClient(create_app(index_dir, token=""))
    err = _error(c.post("/api/classify", data={"labels": "a,b", "path": "red.png"}), 403)
    assert "--root" in err["message"]


# -- bad input ----------------------------------------------------------------------------------
def test_garbage_upload_is_415_naming_it(client):
    files = {"image": ("notes.png", b"this is not an image at all" * 10, "image/png")}
    err = _error(client.post("/api/classify", files=files, data={"labels": "a,b"}), 415)
    assert "notes.png" in err["message"] and err["type"] == "UnsupportedMediaError"


def test_truncated_png_is_400_naming_it(client):
    data = _png_bytes("red", 64)
    files = {"image": ("cut.png", data[: len(data) // 2], "image/png")}
    err = _error(client.post("/api/search/image", files=files), 400)
    assert "cut.png" in err["message"] and err["type"] == "ImageReadError"
    assert "skylens-upload-" not in err["message"]  # the temp file stays private


def test_empty_upload_is_400(client):
    files = {"image": ("void.png", b"", "image/png")}
    assert "void.png" in _error(client.post("/api/search/image", files=files), 400)["message"]


def test_oversize_upload_is_413_naming_the_limit(index_dir):
    c = TestClient(create_app(index_dir, token="", max_upload_bytes=1000))
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 1000
    files = {"image": ("big.png", buf.getvalue(), "image/png")}
    err = _error(c.post("/api/search/image", files=files), 413)
    assert "big.png" in err["message"] and "1000 bytes" in err["message"]
    # a body far past the limit is refused before it is parsed
    huge = {"image": ("huge.png", b"\x89PNG\r\n\x1a\n" + bytes(2 << 20), "image/png")}
    err = _error(c.post("/api/search/image", files=huge), 413)
    assert "limit" in err["message"]


def test_streamed_body_without_length_is_cut_off_at_the_limit():
    c = TestClient(create_app(None, model="fake", token="", max_upload_bytes=1000))

    def body():  # chunked transfer: no Content-Length to check up front
        yield (
            b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
        )
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--xx--\r\n"

    resp = c.post(
        "/api/classify",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=xx"},
    )
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert _error(resp, 413)["type"] == "UploadTooLargeError"


@pytest.mark.parametrize(
    "params, status, word",
    [
        ({"q": "red", "k": 0}, 422, "'k'"),
        ({"q": "red", "k": "many"}, 422, "'k'"),
        ({"q": "red", "format": "xml"}, 422, "'format'"),
        ({}, 422, "'q'"),
        ({"q": "red", "bbox": "1,2,3"}, 400, "bbox"),
        ({"q": "red", "bbox": "0,80,10,95"}, 400, "bbox"),
        ({"q": "red", "after": "last tuesday"}, 400, "after"),
        ({"q": "red", "after": "2021-01-01", "before": "2020-01-01"}, 400, "time range"),
        ({"q": "   "}, 400, "empty"),
        ({"q": "x" * 1001}, 400, "limit"),
    ],
)
def test_malformed_search_params_are_json_4xx(client, params, status, word):
    err = _error(client.get("/api/search", params=params), status)
    assert word in err["message"]


def test_classify_needs_two_labels_and_a_sane_top(client):
    files = {"image": ("a.png", _png_bytes("red"), "image/png")}
    assert (
        "two"
        in _error(client.post("/api/classify", files=files, data={"labels": "red"}), 400)["message"]
    )
    err = _error(client.post("/api/classify", files=files, data={"labels": "a,b", "top": 0}), 422)
    assert "'top'" in err["message"]
    assert _error(client.post("/api/classify", files=files), 422)["type"] == "ValidationError"


# -- thumbnails and the page --------------------------------------------------------------------
def test_thumbnail_renders_the_chip(client):
    hit = client.get("/api/search", params={"q": "red", "k": 1}).json()["hits"][0]
    resp = client.get(f"/api/chip/{hit['id']}/thumbnail.png", params={"size": 16})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    im = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"))
    assert im.shape == (16, 16, 3) and tuple(im[8, 8]) == COL["red"]
    assert _error(client.get("/api/chip/" + "0" * 32 + "/thumbnail.png"), 404)
    traversal = client.get("/api/chip/..%2F..%2Fetc/thumbnail.png")
    assert traversal.status_code in (400, 404) and "error" in traversal.json()
    assert _error(client.get("/api/chip/zzz/thumbnail.png"), 400)["type"] == "InputError"


def test_static_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('<label for="q">', 'id="map"', 'id="drop"', "/static/app.js"):
        assert needle in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_without_an_index_search_says_so_and_classify_works():
    c = TestClient(create_app(None, model="fake", token=""))
    assert c.get("/api/health").json()["index"] is False
    err = _error(c.get("/api/search", params={"q": "red"}), 404)
    assert "no index is loaded" in err["message"]
    files = {"image": ("r.png", _png_bytes("red"), "image/png")}
    assert (
        c.post("/api/classify", files=files, data={"labels": "red,blue"}).json()["labels"][0]
        == "red"
    )
    assert c.get("/api/models").json()["model"] == "fake"


# -- auth and CORS ------------------------------------------------------------------------------
def test_token_is_required_when_configured(index_dir, monkeypatch):
    c = TestClient(create_app(index_dir, token="s3cret"))
    assert c.get("/api/health").status_code == 200  # liveness stays open
    err = _error(c.get("/api/search", params={"q": "red"}), 401)
    assert err["type"] == "AuthError"
    assert _error(c.get("/api/index", headers={"Authorization": "Bearer wrong"}), 401)
    ok = c.get("/api/search", params={"q": "red"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    monkeypatch.setenv("SKYLENS_API_TOKEN", "from-env")
    c = TestClient(create_app(index_dir))
    assert c.get("/api/models").status_code == 401
    assert c.get("/api/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_cors_is_off_unless_origins_are_given(index_dir):
    origin = {"Origin": "http://maps.example.org"}
    off = TestClient(create_app(index_dir, token="")).get("/api/health", headers=origin)
    assert "access-control-allow-origin" not in off.headers
    on = TestClient(create_app(index_dir, token="", cors_origins=["http://maps.example.org"]))
    assert on.get("/api/health", headers=origin).headers["access-control-allow-origin"] == (
        "http://maps.example.org"
    )


def test_safety_helpers(tmp_path):
    assert sniff_image(b"\xff\xd8\xff\xe0") == ("JPEG", ".jpg")
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ")[0] == "WebP"
    assert sniff_image(b"II*\x00")[0] == sniff_image(b"MM\x00*")[0] == "TIFF"
    assert sniff_image(b"\x00\x00\x00\x0cjP  \r\n\x87\n")[0] == "JPEG 2000"
    assert sniff_image(b"GIF89a") is None and sniff_image(b"") is None
    assert token_matches("Bearer abc", "abc") and not token_matches("Basic abc", "abc")
    assert not token_matches(None, "abc")
    (tmp_path / "a").mkdir()
    assert resolve_under_roots("a/../a", [tmp_path]) == (tmp_path / "a").resolve()
    (tmp_path / "a" / "link").symlink_to("/etc")
    with pytest.raises(skylens.errors.InputError):
        resolve_under_roots("a/link/passwd", [tmp_path])


# -- micro-batching -----------------------------------------------------------------------------
def test_batcher_batches_concurrent_calls_and_matches_unbatched():
    enc = skylens.load("fake")
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return enc.encode_texts(texts)

    texts = ["red", "green", "blue", "red roofs", "green", "blue water"]
    batcher = TextBatcher(encode, max_wait_s=30, max_batch=len(texts))

    async def main():
        return await asyncio.gather(*(batcher.encode(t) for t in texts))

    out = asyncio.run(main())
    assert len(calls) == 1 and batcher.calls == 1 and batcher.queries == len(texts)
    assert len(calls[0]) == 5  # the repeated "green" is embedded once
    np.testing.assert_allclose(np.stack(out), enc.encode_texts(texts), rtol=1e-6)


def test_batcher_sends_after_the_wait_and_passes_errors_on():
    sizes: list[int] = []

    def encode(texts):
        sizes.append(len(texts))
        if "boom" in texts:
            raise ValueError("encoder failed")
        return np.ones((len(texts), 3), np.float32)

    batcher = TextBatcher(encode, max_wait_s=0.001)

    async def main():
        one = await batcher.encode("a")  # alone: sent when the wait ends
        with pytest.raises(ValueError, match="encoder failed"):
            await asyncio.gather(batcher.encode("b"), batcher.encode("boom"))
        return one

    assert asyncio.run(main()).shape == (3,)
    assert sizes[0] == 1 and sum(sizes) == 3
    with pytest.raises(ValueError):
        TextBatcher(encode, max_batch=0)


def test_batcher_fills_the_next_batch_while_the_encoder_is_busy():
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 2), np.float32)

    batcher = TextBatcher(encode, max_wait_s=0, max_batch=3, max_inflight=1)

    async def main():
        await asyncio.gather(*(batcher.encode(t) for t in "abcdef"))

    asyncio.run(main())
    # "a" goes at once; the rest queue while it runs and then go in full batches of 3
    assert calls == [["a"], ["b", "c", "d"], ["e", "f"]]


def test_batcher_balances_batches_and_collects_after_a_batch_finishes():
    """Beside a batch in flight, a lone request waits for company (half that batch) or for the
    batch to finish; after a finish, requests arriving within max_wait_s join the next batch."""
    from skylens.service.batching import MicroBatcher

    calls: list[list[str]] = []
    release = threading.Event()

    def run(items):
        calls.append(list(items))
        if items[0] == "big0":
            release.wait(10)  # the first batch stays in flight until the test lets it go
        return items

    batcher = MicroBatcher(run, max_wait_s=0.01, max_batch=64, max_inflight=2, balance=0.5)

    async def main():
        loop = asyncio.get_running_loop()
        big = [asyncio.ensure_future(batcher.submit(f"big{i}")) for i in range(6)]
        await asyncio.sleep(0.05)  # six go together and stay in flight
        lone = asyncio.ensure_future(batcher.submit("lone"))
        await asyncio.sleep(0.05)  # waited 5x max_wait_s, but 1 < 6 / 2: still waiting
        assert calls == [[f"big{i}" for i in range(6)]] and not lone.done()
        company = [asyncio.ensure_future(batcher.submit(f"c{i}")) for i in range(2)]
        await asyncio.gather(lone, *company)  # 3 >= 6 / 2: they go beside the big batch
        assert calls[1] == ["lone", "c0", "c1"] and not any(f.done() for f in big)
        late = asyncio.ensure_future(batcher.submit("late"))
        await asyncio.sleep(0.03)
        assert not late.done()  # 1 < 3: waits for the big batch
        await loop.run_in_executor(None, release.set)
        await asyncio.gather(*big)
        await asyncio.sleep(0)  # the big batch finished: "late" waits max_wait_s for company
        again = asyncio.ensure_future(batcher.submit("again"))
        await asyncio.gather(late, again)

    asyncio.run(main())
    assert calls[2] == ["late", "again"]
    with pytest.raises(ValueError, match="balance"):
        MicroBatcher(run, balance=-1)


def _by_score(hits: list[dict]) -> list[dict]:
    return sorted(hits, key=lambda hit: (-round(hit["score"], 5), hit["id"]))


def test_concurrent_text_searches_share_one_encoder_call(index_dir, monkeypatch):
    queries = ["red", "green", "blue", "red and green", "blue roofs", "green fields"]
    app = create_app(index_dir, token="", batch_wait_s=30, max_batch=len(queries))
    model = skylens.load("fake")
    original = model.encode_texts
    calls: list[int] = []

    def counting(texts):
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(model, "encode_texts", counting, raising=False)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            resps = await asyncio.gather(
                *(c.get("/api/search", params={"q": q, "k": 4}) for q in queries)
            )
        return [r.json() for r in resps]

    batched = asyncio.run(main())
    assert calls == [len(queries)]
    # ... and one search of the vectors held in memory, loaded once
    state = app.state.skylens
    assert state.searcher.calls == 1 and state.searcher.queries == len(queries)
    assert state.memory.loads == 1
    monkeypatch.setattr(model, "encode_texts", original)
    # the same answers, one query at a time through LanceDB (nothing held in memory)
    plain = TestClient(create_app(index_dir, token="", batch_wait_s=0, memory_mb=0))
    assert plain.app.state.skylens.memory is None
    for q, got in zip(queries, batched, strict=True):
        want = plain.get("/api/search", params={"q": q, "k": 4}).json()
        # chips of equal score may come in either order; scores agree to float32 rounding
        got_hits, want_hits = _by_score(got.pop("hits")), _by_score(want.pop("hits"))
        assert [h["id"] for h in got_hits] == [h["id"] for h in want_hits]
        for g, w in zip(got_hits, want_hits, strict=True):
            assert g.pop("score") == pytest.approx(w.pop("score"), abs=2e-6)
            assert g == w
        assert got == want


def test_text_search_goes_to_lancedb_when_vectors_outgrow_memory(index_dir):
    tiny = TestClient(create_app(index_dir, token="", batch_wait_s=0, memory_mb=1e-4))
    memory = tiny.app.state.skylens.memory
    assert memory is not None and not memory.fits()
    body = tiny.get("/api/search", params={"q": "green", "k": 2}).json()
    assert Path(body["hits"][0]["path"]).name == "green.png" and len(body["hits"]) == 2
    assert memory.loads == 0  # plan_search sent the search to LanceDB's exact scan
    err = _error(tiny.get("/api/search", params={"q": "green", "k": 0}), 422)
    assert "k" in err["message"]


# -- CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def keep_threads(monkeypatch):
    """Undo ``configure_threads`` (process-wide) so later tests keep their threads."""
    import threadpoolctl
    import torch

    monkeypatch.delenv("SKYLENS_THREADS", raising=False)  # restored at teardown
    torch_threads = torch.get_num_threads()
    blas = {lib["prefix"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    yield
    torch.set_num_threads(torch_threads)
    threadpoolctl.threadpool_limits(limits=blas)


def test_configure_threads_sets_every_pool_and_sizes_the_batches(keep_threads, monkeypatch):
    import threadpoolctl
    import torch

    from skylens.service.batching import MAX_PARALLEL_BATCHES, configure_threads

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert configure_threads(4) == 4  # 16 cores / 4 threads per call
    assert torch.get_num_threads() == 4 and os.environ["SKYLENS_THREADS"] == "4"
    assert configure_threads(1) == MAX_PARALLEL_BATCHES  # capped
    assert torch.get_num_threads() == 1
    assert all(lib["num_threads"] == 1 for lib in threadpoolctl.threadpool_info())
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert configure_threads(2) == 2  # never fewer than two: encode one while searching another
    with pytest.raises(ValueError, match="threads must be >= 1"):
        configure_threads(0)


def test_serve_command_builds_the_app_and_runs_uvicorn(
    index_dir, archive, monkeypatch, keep_threads
):
    import uvicorn

    from skylens.cli import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    runner = CliRunner()
    res = runner.invoke(
        cli, ["serve", "--index", str(index_dir), "--port", "8123", "--root", str(archive)]
    )
    assert res.exit_code == 0, res.output
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert TestClient(seen["app"]).get("/api/health").json()["index"] is True
    assert seen["app"].state.skylens.searcher.max_inflight >= 2
    import torch

    assert torch.get_num_threads() == 1  # --threads 1, the default
    bad = runner.invoke(cli, ["serve", "--index", str(archive / "nope")])
    assert bad.exit_code == 2 and "not a skylens index" in bad.output
    bad = runner.invoke(cli, ["serve", "--index", str(index_dir), "--threads", "0"])
    assert bad.exit_code == 2 and "--threads must be 1 or more" in bad.output


# -- ask ----------------------------------------------------------------------------------------
def test_ask_upload_answers_or_refuses_with_reason(client):
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    resp = client.post("/api/ask", files=files, data={"question": "How many trees are there?"})
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["supported"] is False and body["text"] == "cannot answer with this model"
    assert body["kind"] == "count" and body["source"] == "leaf.png" and body["reason"]
    resp = client.post(
        "/api/ask", files=files, data={"question": "What is the theme of this picture?"}
    )
    assert resp.status_code == 200 and resp.json()["kind"] == "scene" and resp.json()["supported"]
    resp = client.post("/api/ask", files=files, data={"question": "   "})
    assert resp.status_code == 400 and "empty question" in resp.json()["error"]["message"]


# -- change and localize (server-side rasters under the roots) -----------------------------------
def test_change_between_two_server_side_rasters(client, archive, tmp_path):
    before = np.zeros((64, 64, 3), np.uint8)
    before[:] = COL["red"]
    after = before.copy()
    after[:16, :16] = COL["green"]  # one chip of sixteen changes
    Image.fromarray(before).save(archive / "pair_before.png")
    Image.fromarray(after).save(archive / "pair_after.png")
    pair = {"before": str(archive / "pair_before.png"), "after": str(archive / "pair_after.png")}
    resp = client.post("/api/change", data=pair | {"tile": 16})
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["changed"] is True and len(body["regions"]) == 1
    same = client.post(
        "/api/change", data={"before": pair["before"], "after": pair["before"], "tile": 16}
    )
    assert same.json()["changed"] is False
    outside = tmp_path / "x.png"
    outside.write_bytes(b"")
    resp = client.post("/api/change", data={"before": str(outside), "after": pair["before"]})
    assert resp.status_code == 403


def test_localize_a_phrase_in_a_server_side_scene(client, archive):
    resp = client.get(
        "/api/localize",
        params={
            "path": str(archive / "scene_20200615.tif"),
            "phrase": "blue",
            "tile": 16,
            "stride": 16,
            "top": 2,
        },
    )
    body = resp.json()
    assert resp.status_code == 200, body
    assert len(body["regions"]) == 2
    fc = client.get(
        "/api/localize",
        params={
            "path": str(archive / "scene_20200615.tif"),
            "phrase": "blue",
            "tile": 16,
            "stride": 16,
            "format": "geojson",
        },
    ).json()
    assert fc["type"] == "FeatureCollection" and fc["features"][0]["geometry"]["type"] == "Polygon"
    resp = client.get(
        "/api/localize", params={"path": str(archive / "scene_20200615.tif"), "phrase": " "}
    )
    assert resp.status_code == 400


# -- caption and ask through the model's own capabilities ----------------------------------------
FakeEncoder = type(skylens.load("fake"))  # the colour encoder of conftest.py


class _ColourCaptioner(FakeEncoder, Captioner, Answerer):
    """The fake encoder plus a captioner/answerer naming the dominant colour; variant 'missing'
    behaves like a model whose trained captioning parts are not installed."""

    def __init__(self, variant: str = "") -> None:
        super().__init__(variant)
        self.card = dataclasses.replace(
            self.card, name="fakecap" + (f":{variant}" if variant else "")
        )
        self.variant = variant

    def _colour(self, image: np.ndarray) -> str:
        return list(COL)[int(np.argmax(np.asarray(image, np.float32).reshape(-1, 3).mean(0)))]

    def caption_images(self, images, *, beam: int = 3, max_tokens: int = 40) -> list[str]:
        if self.variant == "missing":
            raise ImportError("No module named 'skylens.models.captioner'")
        if self.variant == "noweights":
            raise CapabilityError("captioning weights are missing: run `skylens train caption`")
        return [f"a {self._colour(im)} scene (beam {beam})" for im in images]

    def answer(self, image: np.ndarray, question: str) -> Answer:
        return Answer(question, "colour", self._colour(image), confidence=0.9)


@pytest.fixture(scope="module")
def captioning_backend():
    register_backend("fakecap", "fake captioner for service tests", "fakecap")(_ColourCaptioner)
    yield
    unregister_backend("fakecap")


def test_caption_with_a_captioning_model(captioning_backend, index_dir, archive):
    client = TestClient(create_app(index_dir, model="fakecap", roots=[archive], token=""))
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    resp = client.post("/api/caption", files=files, data={"beam": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "source": "leaf.png",
        "caption": "a green scene (beam 2)",
        "model": "fakecap",
    }
    resp = client.post("/api/caption", data={"path": "red.png"})
    assert resp.json()["caption"] == "a red scene (beam 3)"
    assert client.get("/api/models").json()["capabilities"] == [
        "ImageTextEncoder", "Captioner", "Answerer"
    ]  # fmt: skip


@pytest.mark.parametrize("model", ["fake", "fakecap:missing", "fakecap:noweights"])
def test_caption_without_captioning_is_a_422_capability_error(captioning_backend, index_dir, model):
    client = TestClient(create_app(index_dir, model=model, token=""))
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    err = _error(client.post("/api/caption", files=files), 422)
    assert err["type"] == "CapabilityError"
    assert model.split(":")[0] in err["message"] or "weights are missing" in err["message"]


def test_ask_uses_the_models_own_answerer(captioning_backend, index_dir):
    client = TestClient(create_app(index_dir, model="fakecap", token=""))
    files = {"image": ("sea.png", _png_bytes("blue"), "image/png")}
    body = client.post("/api/ask", files=files, data={"question": "Which colour?"}).json()
    assert body["text"] == "blue" and body["kind"] == "colour" and body["model"] == "fakecap"


# -- change and localize with uploads and pictures -----------------------------------------------
def _png_of(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _decode_data_url(url: str) -> np.ndarray:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_change_between_two_uploads_with_the_change_map(client, archive):
    before = np.zeros((64, 64, 3), np.uint8)
    before[:] = COL["red"]
    after = before.copy()
    after[48:, 48:] = COL["green"]  # the south-east chip changes
    files = {
        "before_image": ("2019.png", _png_of(before), "image/png"),
        "after_image": ("2023.png", _png_of(after), "image/png"),
    }
    resp = client.post("/api/change", files=files, data={"tile": 16, "picture": "true"})
    body = resp.json()
    assert resp.status_code == 200, body
    assert [g["location"] for g in body["regions"]] == ["south-east"]
    assert body["before"] == "upload '2019.png'" and body["after"] == "upload '2023.png'"
    assert "skylens-upload-" not in resp.text  # temporary files are never named
    picture = _decode_data_url(body["change_map_png"])
    assert picture.shape[:2] == (64, 64)
    # the changed chip is tinted red and outlined; an unchanged corner keeps its colour
    assert tuple(picture[0, 0, :3]) == COL["red"]
    assert tuple(picture[49, 49, :3]) != tuple(after[49, 49])
    # an upload and a path may be mixed; both or neither for one date is refused
    mixed = client.post(
        "/api/change",
        files={"after_image": files["after_image"]},
        data={"before": str(archive / "red.png"), "tile": 16},
    )
    assert mixed.status_code == 400  # 40x40 red.png vs 64x64 upload: sizes differ, named
    both = client.post(
        "/api/change", files=files, data={"before": str(archive / "red.png"), "tile": 16}
    )
    assert "exactly one before raster" in _error(both, 400)["message"]


def test_localize_an_upload_with_the_heatmap(client):
    scene = np.zeros((64, 64, 3), np.uint8)
    scene[:] = COL["green"]
    scene[:32, 32:] = COL["blue"]  # blue in the north-east quarter
    files = {"image": ("scene.png", _png_of(scene), "image/png")}
    data = {"phrase": "blue", "tile": 32, "stride": 32, "top": 1, "picture": "true"}
    resp = client.post("/api/localize", files=files, data=data)
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["regions"][0]["window"] == [32, 0, 32, 32]
    assert body["scene"] == "upload 'scene.png'"
    heat = _decode_data_url(body["heatmap_png"])
    assert heat.shape[:2] == (64, 64)
    assert tuple(heat[63, 0, :3]) != tuple(heat[0, 63, :3])
    fc = client.post("/api/localize", files=files, data=data | {"format": "geojson"}).json()
    assert fc["type"] == "FeatureCollection" and fc["properties"]["scene"] == "upload 'scene.png'"
    garbage = {"image": ("x.png", b"not an image at all", "image/png")}
    assert _error(client.post("/api/localize", files=garbage, data=data), 415)


def test_classify_reports_the_models_unsure_verdict_like_the_cli(client, monkeypatch):
    """The service classifies through ``tasks.classify.classify_images``: a model whose margin
    says the best label is not clearly ahead makes the answer ``unsure``, as in the CLI."""
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    sure = client.post("/api/classify", files=files, data={"labels": "red,green,blue"}).json()
    assert sure["unsure"] is False
    enc = client.app.state.skylens.encoder()
    monkeypatch.setattr(type(enc), "unsure_margin", 1.01, raising=False)  # nothing leads by > 1
    files = {"image": ("leaf.png", _png_bytes("green"), "image/png")}
    unsure = client.post("/api/classify", files=files, data={"labels": "red,green,blue"}).json()
    assert unsure["unsure"] is True and unsure["labels"] == sure["labels"]
