"""Ingest -> index -> search/classify end to end with the fake colour encoder (milliseconds)."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

import skylens
from skylens.errors import IndexMismatchError, InputError
from skylens.index.ingest import acquisition_time, ingest
from skylens.index.store import ChipIndex
from skylens.tasks.classify import classify, parse_labels
from skylens.tasks.search import search_image, search_text

COL = {"red": (220, 20, 20), "green": (20, 200, 30), "blue": (20, 30, 210)}


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
