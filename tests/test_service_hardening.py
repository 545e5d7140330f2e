"""Regression tests for the hostile-input findings of issue 18, through the HTTP face.

Each test failed before the fix it names: a decompression-sized scan, work left running after
the client went, path names over 255 bytes, extreme dates, damaged indexes, missing security
headers, NaN in JSON, out-of-range counts, long phrases, server paths in messages, and rasters
with no valid pixels answered with confidence.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.transform import from_origin
from typer.testing import CliRunner

import skylens
from skylens.errors import InputError
from skylens.index.ingest import ingest
from skylens.index.store import ChipIndex
from skylens.service import create_app
from skylens.service.dependencies import run_cancellable
from skylens.service.errors import ClientGone
from skylens.service.pictures import SafeJSONResponse, finite
from skylens.tasks.budget import Cancelled, ScanLimits, cancellable, check_scan, count_windows

RED = (220, 20, 20)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _huge_png(path: Path, side: int = 30_000) -> Path:
    """A valid grey PNG of side x side px, written row by row: ~900 KB for 900 Mpx."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one grey byte a pixel
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


def _geotiff(path: Path, arr: np.ndarray, nodata=None) -> Path:
    bands, h, w = arr.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=arr.dtype,
        crs="EPSG:32618", transform=from_origin(500000, 4000000, 10, 10), nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(arr)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("served-root")
    (d / "red.png").write_bytes(_png(np.full((40, 40, 3), RED, np.uint8)))
    scene = np.full((3, 48, 48), 200, np.uint8)
    _geotiff(d / "scene_20200615.tif", scene)
    _geotiff(d / "all_nan.tif", np.full((3, 32, 32), np.nan, np.float32))
    _geotiff(d / "all_nodata.tif", np.zeros((3, 32, 32), np.uint16), nodata=0)
    (d / "black_1x1.png").write_bytes(_png(np.zeros((1, 1, 3), np.uint8)))
    half = np.full((3, 64, 64), 0.5, np.float32)
    half[:, :32, :] = np.nan  # the north half has no data
    _geotiff(d / "half_nan.tif", half)
    return d


@pytest.fixture(scope="module")
def index_dir(root, tmp_path_factory) -> Path:
    enc = skylens.load("fake")
    d = tmp_path_factory.mktemp("hard") / "index"
    idx = ChipIndex.create_or_open(
        d, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
    )
    ingest([root / "red.png", root / "scene_20200615.tif"], idx, enc, size=256, overlap=0)
    return d


@pytest.fixture(scope="module")
def client(index_dir, root) -> TestClient:
    return TestClient(create_app(index_dir, roots=[root], token=""), raise_server_exceptions=False)


def _err(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert "Traceback" not in resp.text
    return body["error"]


# -- 1. work bounds, cancellation, SIGTERM -------------------------------------------------------
def test_a_30000_px_png_at_tile_16_stride_8_is_refused_before_decoding(client, root, tmp_path):
    big = _huge_png(tmp_path / "bomb.png")
    assert big.stat().st_size < 2_000_000
    files = {"image": ("bomb.png", big.read_bytes(), "image/png")}
    data = {"phrase": "red", "tile": 16, "stride": 8}
    err = _err(client.post("/api/localize", files=files, data=data), 413)
    assert err["type"] == "WorkTooLargeError"
    assert "30000 x 30000" in err["message"] and "windows" in err["message"]
    assert "bomb.png" in err["message"] and "skylens-upload" not in err["message"]
    assert count_windows(30_000, 30_000, 16, 8) > 14_000_000


def test_scan_limits_count_pixels_and_windows(root):
    scene = root / "scene_20200615.tif"  # 48 x 48
    assert check_scan(scene, 16, 8, ScanLimits(), "scene") == count_windows(48, 48, 16, 8) == 25
    with pytest.raises(InputError, match="25 windows"):
        check_scan(scene, 16, 8, ScanLimits(max_windows=24), "scene")
    with pytest.raises(InputError, match="2,304 px"):
        check_scan(scene, 16, 8, ScanLimits(max_pixels=2000), "scene")


def test_a_job_stops_at_its_next_batch_once_cancelled(root):
    from skylens.tasks.localize import localize

    enc = skylens.load("fake")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        localize(root / "scene_20200615.tif", "red", cancellable(enc, cancel), tile=16, stride=8)
    # not cancelled: the same answer as the bare encoder
    plain = localize(root / "scene_20200615.tif", "red", enc, tile=16, stride=16)
    wrapped = localize(
        root / "scene_20200615.tif", "red", cancellable(enc, threading.Event()), tile=16, stride=16
    )
    np.testing.assert_array_equal(plain.heatmap, wrapped.heatmap)


def test_work_is_cancelled_when_the_client_disconnects():
    class LeavingClient:
        url = type("U", (), {"path": "/api/localize"})()

        def __init__(self) -> None:
            self.polls = 0

        async def is_disconnected(self) -> bool:
            self.polls += 1
            return self.polls >= 2

    seen = threading.Event()

    def job(cancel: threading.Event) -> str:
        deadline = time.monotonic() + 30
        while not cancel.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.set()
        return "finished"

    with pytest.raises(ClientGone):
        asyncio.run(run_cancellable(LeavingClient(), job))
    assert seen.wait(5), "the worker thread never saw the cancellation"


# -- 4. long path components -----------------------------------------------------------------
LONG = "x" * 300 + ".png"
PATH_ROUTES = [
    ("post", "/api/classify", {"data": {"labels": "a,b", "path": LONG}}),
    ("post", "/api/caption", {"data": {"path": LONG}}),
    ("post", "/api/ask", {"data": {"question": "what is it?", "path": LONG}}),
    ("post", "/api/search/image", {"data": {"path": LONG}}),
    ("get", "/api/localize", {"params": {"path": LONG, "phrase": "red"}}),
    ("post", "/api/localize", {"data": {"path": LONG, "phrase": "red"}}),
    ("post", "/api/change", {"data": {"before": LONG, "after": "red.png"}}),
    ("post", "/api/classify", {"data": {"labels": "a,b", "path": f"sub/{LONG}/a.png"}}),
]


@pytest.mark.parametrize("method, url, kw", PATH_ROUTES)
def test_a_path_component_over_255_bytes_is_a_4xx(client, method, url, kw):
    resp = getattr(client, method)(url, **kw)
    assert 400 <= resp.status_code < 500, resp.text
    assert "Traceback" not in resp.text


def test_a_chip_id_over_255_bytes_is_a_4xx_and_the_connection_lives(client):
    assert client.get(f"/api/chip/{'a' * 300}/thumbnail.png").status_code == 422
    assert client.get("/api/health").status_code == 200


# -- 5. extreme dates ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, n_hits",
    [
        ({"after": "0001-01-01T00:00:00+01:00", "before": "9999-12-31T23:59:59-14:00"}, 1),
        ({"after": "0001-01-01T00:00:00+01:00"}, 1),
        ({"before": "9999-12-31T23:59:59-14:00"}, 1),
        ({"before": "0001-01-01T00:00:00+01:00"}, 0),
        ({"after": "9999-12-31T23:59:59-14:00"}, 0),
        ({"after": "0001-01-01", "before": "0001-01-02"}, 0),
    ],
)
def test_extreme_dates_give_correct_results(client, params, n_hits):
    # one chip of the index is dated (scene_20200615.tif); the PNG has no date
    resp = client.get("/api/search", params={"q": "blue", **params})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["hits"]) == n_hits


# -- 6. damaged index ----------------------------------------------------------------------------
def _damaged_copy(index_dir: Path, tmp_path: Path, how: str) -> Path:
    import shutil

    d = tmp_path / f"damaged-{how}"
    shutil.copytree(index_dir, d)
    if how == "data":
        next(p for p in (d / "lancedb").rglob("*.lance") if p.is_file()).unlink()
    else:
        for m in (d / "lancedb").rglob("*.manifest"):
            m.write_bytes(m.read_bytes()[:20])
    return d


@pytest.mark.parametrize("how", ["data", "manifest"])
def test_a_damaged_index_stops_serve_at_start_up_with_a_clear_error(index_dir, tmp_path, how):
    from skylens.cli import app as cli
    from skylens.tasks.search import IndexDamagedError

    d = _damaged_copy(index_dir, tmp_path, how)
    with pytest.raises(IndexDamagedError, match="cannot be read"):
        create_app(d, token="")
    res = CliRunner().invoke(cli, ["serve", "--index", str(d)])
    assert res.exit_code == 2 and "cannot be read" in res.output
    assert "Traceback" not in res.output and "lance error" not in res.output


# -- 7. security headers ---------------------------------------------------------------------------
def test_every_response_carries_the_security_headers(client, monkeypatch):
    from skylens.service.state import ServiceState

    def boom(self):
        raise RuntimeError("a bug")

    responses = [
        client.get("/api/health"),
        client.get("/"),
        client.get("/docs"),
        client.get("/openapi.json"),
        client.get("/api/nope"),
        client.get("/api/search", params={"k": 0}),
        client.post("/api/classify", data={"labels": "a"}),
    ]
    monkeypatch.setattr(ServiceState, "models_info", boom)
    responses.append(client.get("/api/models"))  # an unexpected error: a JSON 500
    assert responses[-1].status_code == 500 and "a bug" not in responses[-1].text
    for resp in responses:
        assert resp.headers["x-content-type-options"] == "nosniff", resp.url
        assert resp.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_headers_even_when_the_token_is_missing(index_dir):
    resp = TestClient(create_app(index_dir, token="s3cret")).get("/api/index")
    assert resp.status_code == 401 and resp.headers["x-content-type-options"] == "nosniff"


# -- 8. NaN in JSON -----------------------------------------------------------------------------
def test_nan_leaves_as_null():
    body = SafeJSONResponse({"mean": float("nan"), "rows": [[1.0, float("inf")]]}).body
    assert json.loads(body) == {"mean": None, "rows": [[1.0, None]]}
    assert finite((1.5, float("-inf"))) == [1.5, None]


def test_a_scene_half_without_data_answers_strict_json(client, root):
    resp = client.get(
        "/api/localize",
        params={"path": "half_nan.tif", "phrase": "red", "tile": 16, "stride": 16},
    )
    assert resp.status_code == 200, resp.text

    def refuse(token):
        raise AssertionError(f"{token} is not JSON")

    body = json.loads(resp.text, parse_constant=refuse)
    assert body["heatmap"][0][0] is None and body["heatmap"][-1][-1] is not None


# -- 9/10. counts, thresholds, phrases --------------------------------------------------------------
@pytest.mark.parametrize("top", [0, -1])
def test_top_zero_or_negative_is_refused(client, top):
    assert (
        client.post(
            "/api/classify", data={"labels": "a,b", "path": "red.png", "top": top}
        ).status_code
        == 422
    )
    params = {"path": "red.png", "phrase": "red", "top": top}
    assert client.get("/api/localize", params=params).status_code == 422


@pytest.mark.parametrize("bbox", ["nan,0,1,1", "0,0,inf,1"])
def test_non_finite_numbers_are_refused(client, bbox):
    assert (
        "bbox" in _err(client.get("/api/search", params={"q": "red", "bbox": bbox}), 400)["message"]
    )


def test_a_10k_character_phrase_is_refused_like_search_and_ask(client):
    phrase = "x" * 10_000
    err = _err(client.get("/api/localize", params={"path": "red.png", "phrase": phrase}), 400)
    assert "limit is 1000" in err["message"]
    err = _err(client.post("/api/localize", data={"path": "red.png", "phrase": phrase}), 400)
    assert "limit is 1000" in err["message"]
    from skylens.tasks.localize import localize

    with pytest.raises(InputError, match="limit"):
        localize(Path("unused.png"), phrase, skylens.load("fake"))


# -- 11. no server paths in messages ---------------------------------------------------------------
def test_messages_never_show_the_root_the_index_or_temp_names(client, root, index_dir, tmp_path):
    probes = [
        client.post("/api/classify", data={"labels": "a,b", "path": "missing.png"}),
        client.post("/api/classify", data={"labels": "a,b", "path": str(root / "missing.png")}),
        client.post("/api/classify", data={"labels": "a,b", "path": str(tmp_path / "x.png")}),
        client.get(f"/api/chip/{'0' * 32}/thumbnail.png"),
        client.post("/api/classify", data={"labels": "a,b"},
                    files={"image": ("t.png", _png(np.ones((8, 8, 3), np.uint8))[:60], "image/png")}),
        client.get("/api/localize", params={"path": "scene_20200615.tif", "phrase": "red", "tile": 2048}),
    ]  # fmt: skip
    secrets = [str(root), str(root.resolve()), str(index_dir), str(tmp_path), "skylens-upload-"]
    for resp in probes:
        assert 400 <= resp.status_code < 500, resp.text
        for secret in secrets:
            assert secret not in resp.text, (secret, resp.text)
    assert client.get("/api/index").json()["index"] == index_dir.name


# -- 12. no valid pixels ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["all_nan.tif", "all_nodata.tif", "black_1x1.png"])
def test_rasters_without_valid_pixels_get_a_4xx_not_an_answer(client, name):
    for url, data in [
        ("/api/classify", {"labels": "forest,sea", "path": name}),
        ("/api/ask", {"question": "what is this?", "path": name}),
        ("/api/search/image", {"path": name}),
    ]:
        err = _err(client.post(url, data=data), 422)
        assert err["type"] == "NoValidPixelsError" and "no valid pixels" in err["message"]
    if name != "black_1x1.png":  # smaller than a window: refused as such
        err = _err(
            client.get(
                "/api/localize", params={"path": name, "phrase": "red", "tile": 16, "stride": 16}
            ),
            422,
        )
        assert "no window" in err["message"]


def test_valid_pixel_check():
    from skylens.imagery import has_valid_pixels

    assert has_valid_pixels(np.full((2, 2, 3), 7, np.uint8))
    assert not has_valid_pixels(np.zeros((1, 1, 3), np.uint8))
    assert not has_valid_pixels(np.full((2, 2, 1), np.nan, np.float32))
    assert not has_valid_pixels(np.ones((2, 2, 3)), valid=np.zeros((2, 2), bool))
    half = np.ones((2, 2, 3), np.float32)
    half[0] = np.nan
    assert has_valid_pixels(half)


# -- 5 (user-facing). offline docs, confidences -----------------------------------------------------
def test_docs_are_served_offline(client):
    html = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()  # Swagger UI 5
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/openapi.json").json()["info"]["title"] == "skylens"


def test_presence_confidence_is_a_probability():
    from skylens.models.answerer import ZeroShotAnswerer

    answerer = ZeroShotAnswerer(skylens.load("fake"))
    for colour in (RED, (0, 0, 0), (255, 255, 255)):
        image = np.full((32, 32, 3), colour, np.uint8)
        answer = answerer.answer(image, "Is there a river?")
        if answer.confidence is not None:
            assert 0.0 <= answer.confidence <= 1.0


@pytest.mark.parametrize("top", [0, -3])
def test_the_classify_task_refuses_top_zero_for_every_face(top):
    from skylens.tasks.classify import classify_arrays

    with pytest.raises(InputError, match="top must be a positive"):
        classify_arrays(
            skylens.load("fake"), [np.full((8, 8, 3), 9, np.uint8)], ["a", "b"], top=top
        )


def test_an_answerer_whose_parts_are_missing_is_a_422_not_a_500(index_dir, root):
    from skylens.models.base import Answerer, register_backend, unregister_backend

    class Missing(type(skylens.load("fake")), Answerer):
        def answer(self, image, question):
            raise ImportError("No module named 'skylens.models.vqa_heads'")

    register_backend("fakemissing", "answerer without its parts", "fakemissing")(
        lambda rest: Missing(rest)
    )
    try:
        c = TestClient(create_app(index_dir, model="fakemissing", roots=[root], token=""))
        err = _err(c.post("/api/ask", data={"question": "what is it?", "path": "red.png"}), 422)
        assert err["type"] == "CapabilityError" and "cannot answer" in err["message"]
    finally:
        unregister_backend("fakemissing")
