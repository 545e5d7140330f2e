"""Ingest -> index -> search/classify end to end with the fake colour encoder (milliseconds)."""

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from typer.testing import CliRunner

import skylens
from skylens.cli import app
from skylens.errors import IndexMismatchError, InputError
from skylens.index.embed import embed_images, embed_stream
from skylens.index.ingest import acquisition_time, ingest
from skylens.index.store import ChipIndex
from skylens.models.base import Captioner, register_backend, unregister_backend
from skylens.tasks.classify import classify, parse_labels
from skylens.tasks.search import search_image, search_text

COL = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (20, 30, 210)}
FakeEncoder = type(skylens.load("fake"))  # tests/conftest.py's colour encoder


def _png(path: Path, colour: str, size=(40, 40)) -> Path:
    arr = np.zeros((*size, 3), np.uint8)
    arr[:] = COL[colour]
    Image.fromarray(arr).save(path)
    return path


def _geotiff(path: Path, nodata_left=False) -> Path:
    """64x64 uint16 3-band GeoTIFF, UTM 32618: left half red-ish, right half blue-ish."""
    arr = np.zeros((3, 64, 64), np.uint16)
    arr[0, :, :32] = 3000
    arr[2, :, 32:] = 3000
    arr[:, :, :] += 100
    if nodata_left:
        arr[:, :, :32] = 0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint16",
        crs="EPSG:32618",
        transform=from_origin(500000, 4000000, 10, 10),
        nodata=0,
    ) as dst:
        dst.write(arr)
    return path


@pytest.fixture
def archive(tmp_path):
    d = tmp_path / "archive"
    d.mkdir()
    for c in COL:
        _png(d / f"{c}.png", c)
    return d


def _index(tmp_path, model):
    return ChipIndex.create_or_open(
        tmp_path / "idx",
        model_name=model.name,
        model_version=model.version,
        embed_dim=model.embed_dim,
    )


def test_text_search_finds_the_right_colour(tmp_path, archive):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    report = ingest([archive], idx, model, size=256, overlap=0)
    assert report.chips_added == 3 and report.files == 3 and not report.failed
    for colour in COL:
        result = search_text(idx, colour, model=model, k=3)
        assert Path(result.hits[0].path).stem == colour
        assert result.hits[0].score >= result.hits[1].score


def test_reingest_adds_nothing_and_resumes(tmp_path, archive):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    ingest([archive / "red.png"], idx, model)
    again = ingest([archive], idx, model)
    assert again.chips_added == 2 and again.chips_skipped_existing == 1
    assert idx.count() == 3
    assert ingest([archive], idx, model).chips_added == 0
    assert idx.count() == 3


def test_geotiff_chips_carry_footprints_and_skip_nodata(tmp_path):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    tif = _geotiff(tmp_path / "scene_20160401.tif", nodata_left=True)
    report = ingest([tif], idx, model, size=32, overlap=0)
    assert report.chips_seen == 4
    assert report.chips_skipped_nodata == 2 and report.chips_added == 2
    hits = search_text(idx, "blue", model=model, k=5).hits
    assert len(hits) == 2
    ring = hits[0].footprint["coordinates"][0]
    lons = [p[0] for p in ring]
    assert all(-76 < x < -74 for x in lons)  # UTM 18N, easting 500 km: the -75 meridian
    assert hits[0].acquired is not None and hits[0].acquired.year == 2016


def test_bbox_filter(tmp_path):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    ingest([_geotiff(tmp_path / "a.tif")], idx, model, size=32, overlap=0)
    all_hits = search_text(idx, "red", model=model, k=10).hits
    assert len(all_hits) == 4
    far = search_text(idx, "red", model=model, k=10, bbox=(10.0, 10.0, 11.0, 11.0)).hits
    assert far == []


def test_bad_files_are_reported_and_good_ones_kept(tmp_path, archive):
    (archive / "empty.png").write_bytes(b"")
    (archive / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    report = ingest([archive], idx, model)
    assert report.chips_added == 3
    failed = {Path(f["path"]).name for f in report.failed}
    assert failed == {"empty.png", "corrupt.jpg"}
    assert all(Path(f["path"]).name in f["error"] for f in report.failed)


def test_index_refuses_another_model(tmp_path, archive):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    ingest([archive], idx, model)
    other = skylens.load("fake:v2")
    with pytest.raises(IndexMismatchError):
        search_text(idx, "red", model=other)
    with pytest.raises(IndexMismatchError):
        ChipIndex.create_or_open(
            tmp_path / "idx", model_name=other.name, model_version=other.version, embed_dim=8
        )
    assert idx.count() == 3


def test_search_by_image(tmp_path, archive):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    ingest([archive], idx, model)
    q = _png(tmp_path / "query.png", "green", size=(20, 30))
    assert Path(search_image(idx, q, model=model, k=1).hits[0].path).stem == "green"


def test_empty_query_is_refused(tmp_path, archive):
    model = skylens.load("fake")
    idx = _index(tmp_path, model)
    with pytest.raises(InputError, match="empty"):
        search_text(idx, "   ", model=model)


def test_classify_zero_shot_with_fake(tmp_path, archive):
    model = skylens.load("fake")
    results = classify(model, [archive], ["red", "green", "blue"], top=2)
    by = {Path(r.source).stem: r for r in results}
    assert by["red"].labels[0] == "red" and by["blue"].labels[0] == "blue"
    assert abs(sum(by["green"].scores) - 1) < 1 or by["green"].scores[0] > by["green"].scores[1]


def test_parse_labels(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# classes\nforest\n\nwater\nForest\n")
    assert parse_labels("harbor, beach", f) == ["forest", "water", "harbor", "beach"]
    with pytest.raises(InputError):
        parse_labels("one")


def test_acquisition_time_from_name():
    assert acquisition_time(Path("rgbn_20170203.tif")).month == 2
    assert acquisition_time(Path("tile_001.tif")) is None


# -- the shared batched embedding path -------------------------------------------------------------


class PixelsFake(FakeEncoder):
    """The fake encoder with the default model's two-step path: preprocess + encode_pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.pixel_batches: list[tuple[int, ...]] = []
        self.threads: set[str] = set()

    def preprocess(self, images):
        self.threads.add(threading.current_thread().name)
        return np.stack([np.asarray(im, np.float32) for im in images])

    def encode_pixels(self, pixels):
        self.pixel_batches.append(pixels.shape)
        return self.encode_images([p.astype(np.uint8) for p in pixels])


def _chips(n: int):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(n)]


def test_embed_stream_batches_in_order_through_encode_pixels():
    model, chips = PixelsFake(), _chips(10)
    batches = list(
        embed_stream(model, ((i, c) for i, c in enumerate(chips)), batch_size=4, thread_name="rd")
    )
    assert [b.payloads for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert model.pixel_batches == [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
    assert model.threads == {"rd"}  # preprocessing ran on the reader thread
    vectors = np.concatenate([b.vectors for b in batches])
    np.testing.assert_allclose(vectors, model.encode_images(chips), atol=1e-7)
    np.testing.assert_allclose(embed_images(model, chips, batch_size=3), vectors, atol=1e-7)
    # a model without encode_pixels gets RGB chips through encode_images, same vectors
    plain = FakeEncoder()
    got = list(embed_stream(plain, enumerate(chips), batch_size=4, keep_images=True))
    np.testing.assert_allclose(np.concatenate([b.vectors for b in got]), vectors, atol=1e-7)
    assert plain.calls == 3 and got[2].images[1] is chips[9]


def test_embed_stream_reraises_source_errors_and_stops_reader_early():
    def broken():
        yield 0, _chips(1)[0]
        raise InputError("scene.tif: window 3 unreadable")

    with pytest.raises(InputError, match="window 3 unreadable"):
        list(embed_stream(FakeEncoder(), broken(), batch_size=4))
    read = []

    def endless():
        for i in itertools.count():
            read.append(i)
            yield i, np.zeros((4, 4, 3), np.uint8)

    stream = embed_stream(FakeEncoder(), endless(), batch_size=2, queue_batches=1, thread_name="x")
    next(stream)
    stream.close()  # the caller stops: the reader must stop too
    assert not any(t.name == "x" for t in threading.enumerate())
    assert len(read) < 10


# -- captions: ingest --caption, caption failures, hybrid search --------------------------------------

CAPTIONS = {"red": "a tennis court", "green": "a dense forest", "blue": "a harbour with boats"}


class CaptioningFake(FakeEncoder, Captioner):
    """Fake encoder that also captions: names the dominant colour's scene (words the colour
    encoder cannot match), or fails on demand."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__()
        self.seen: list[tuple] = []
        self.fail = fail

    def caption_images(self, images, *, beam=3, max_tokens=40):
        self.seen.extend((np.asarray(im).shape, np.asarray(im).dtype) for im in images)
        if self.fail == "raise":
            raise RuntimeError("caption weights missing")
        if self.fail == "short":
            return ["one caption"]
        names = list(COL)
        return [
            CAPTIONS[names[int(np.argmax(np.asarray(im).reshape(-1, 3).mean(0)))]] for im in images
        ]


def test_ingest_stores_captions_and_search_matches_them(tmp_path, archive):
    model = CaptioningFake()
    idx = _index(tmp_path, model)
    report = ingest([archive], idx, model, captioner=model)
    assert report.chips_added == 3 and report.chips_captioned == 3
    assert set(model.seen) == {((40, 40, 3), np.dtype(np.uint8))}  # RGB chips, not tensors
    assert idx.has_caption_index() and idx.captioned_count() == 3
    plain = search_text(idx, "boats", model=model, k=3).hits
    assert all(h.caption_score is None and h.fused_score is None for h in plain)
    hybrid = search_text(idx, "boats", model=model, k=3, match_captions=True).hits
    assert Path(hybrid[0].path).stem == "blue" and hybrid[0].caption == CAPTIONS["blue"]
    assert hybrid[0].caption_score > 0 and [h.caption_score for h in hybrid[1:]] == [None, None]
    assert hybrid[0].fused_score > hybrid[1].fused_score
    # the score stays the exact cosine similarity of the vector search
    by_id = {h.id: h.score for h in plain}
    assert all(h.score == pytest.approx(by_id[h.id], abs=1e-5) for h in hybrid)
    # filters apply to the caption side too
    assert (
        search_text(idx, "forest", model=model, match_captions=True, source="/nowhere").hits == []
    )


def test_failing_captioner_never_corrupts_the_index(tmp_path, archive):
    good = CaptioningFake()
    idx = _index(tmp_path, good)
    for fail in ("raise", "short"):
        report = ingest([archive], idx, good, captioner=CaptioningFake(fail=fail))
        assert report.caption_failures == 3 and report.chips_captioned == 0
        assert "failed" in report.caption_error and not report.failed
    assert idx.count() == 3 and idx.captioned_count() == 0
    with pytest.raises(InputError, match="no chip has a caption"):
        search_text(idx, "boats", model=good, match_captions=True)
    # a later run with a working captioner fills the captions in place: no duplicates
    again = ingest([archive], idx, good, captioner=good)
    assert again.chips_added == 0 and again.chips_captioned == 3
    assert idx.count() == 3 and idx.captioned_count() == 3
    assert (
        search_text(idx, "forest", model=good, match_captions=True, k=1).hits[0].caption
        == (CAPTIONS["green"])
    )
    # and once captioned, chips are skipped as before
    assert ingest([archive], idx, good, captioner=good).chips_skipped_existing == 3


@pytest.fixture
def captioning_backend():
    register_backend("fakecap", "fake encoder + captioner")(lambda rest: CaptioningFake())
    yield
    unregister_backend("fakecap")


def test_cli_index_caption_and_search_match_captions(tmp_path, archive, captioning_backend):
    runner = CliRunner()
    idx = str(tmp_path / "idx")
    res = runner.invoke(
        app, ["index", str(archive), "--index", idx, "--model", "fake", "--caption"]
    )
    assert res.exit_code != 0 and "Captioner" in res.output  # fake cannot caption
    assert not (tmp_path / "idx").exists()  # refused before anything was written
    res = runner.invoke(
        app, ["index", str(archive), "--index", idx, "--model", "fakecap", "--caption"]
    )
    assert res.exit_code == 0, res.output
    assert "captioned 3 chip(s)" in res.output
    res = runner.invoke(
        app, ["search", idx, "boats", "--match-captions", "--format", "json", "--k", "1"]
    )
    assert res.exit_code == 0, res.output
    (hit,) = json.loads(res.output)["hits"]
    assert hit["caption"] == CAPTIONS["blue"] and hit["caption_score"] > 0
