"""The LanceDB chip index: idempotent appends, filters, model checks, ANN, atomicity."""

from datetime import datetime

import numpy as np
import pytest

from skylens.errors import IndexMismatchError, InputError, NotFoundError
from skylens.index.store import ChipIndex, hits_to_geojson

DIM = 16


def _rows(n, start=0, seed=0, lon=10.0, when=None):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = []
    for i in range(n):
        x = lon + (start + i) * 0.01
        fp = {"type": "Polygon", "coordinates": [[[x, 50], [x + 0.01, 50], [x + 0.01, 50.01], [x, 50.01], [x, 50]]]}
        rows.append({
            "id": ChipIndex.chip_id("digest", (start + i, 0, 8, 8), "v1"),
            "path": f"/data/scene_{(start + i) % 3}.tif", "window": [start + i, 0, 8, 8], "bounds": [0, 0, 1, 1],
            "crs": "EPSG:4326", "footprint": fp, "acquired": when, "bands": "1,2,3", "source_digest": "digest",
            "caption": None, "vector": vecs[i],
        })
    return rows, vecs


def _index(tmp_path, version="v1"):
    return ChipIndex.create_or_open(tmp_path / "idx", model_name="m", model_version=version, embed_dim=DIM)


def test_search_ranks_like_brute_force(tmp_path):
    idx = _index(tmp_path)
    rows, vecs = _rows(200)
    assert idx.add(rows) == 200
    q = vecs[17] + 0.05 * vecs[3]
    hits = idx.search(q, k=5)
    expect = np.argsort(-(vecs @ (q / np.linalg.norm(q))))[:5]
    assert [h.window[0] for h in hits] == expect.tolist()
    assert hits[0].score == pytest.approx(float(vecs[17] @ q / np.linalg.norm(q)), abs=1e-4)


def test_add_is_idempotent(tmp_path):
    idx = _index(tmp_path)
    rows, _ = _rows(50)
    assert idx.add(rows) == 50
    assert idx.add(rows) == 0
    assert idx.add(rows[:10] + _rows(5, start=50)[0] + rows[:2]) == 5
    assert idx.count() == 55
    assert idx.existing_ids([rows[0]["id"], "nope"]) == {rows[0]["id"]}


def test_bad_batch_never_half_writes(tmp_path):
    idx = _index(tmp_path)
    rows, _ = _rows(20)
    idx.add(rows[:10])
    bad = rows[10:]
    bad[5] = dict(bad[5], vector=np.zeros(DIM + 1, np.float32))
    with pytest.raises(InputError, match="vector shape"):
        idx.add(bad)
    nan = [dict(r) for r in rows[10:]]
    nan[0]["vector"] = np.full(DIM, np.nan, np.float32)
    with pytest.raises(InputError):
        idx.add(nan)
    assert idx.count() == 10


def test_filters(tmp_path):
    idx = _index(tmp_path)
    a, _ = _rows(10, when=datetime(2016, 1, 1))
    b, _ = _rows(10, start=100, seed=1, when=datetime(2020, 6, 1))
    idx.add(a + b)
    q = a[0]["vector"]
    near = idx.search(q, k=50, bbox=(10.0, 49.9, 10.05, 50.1))
    assert near and all(h.window[0] < 10 for h in near)
    assert idx.search(q, k=50, bbox=(100, 0, 101, 1)) == []
    late = idx.search(q, k=50, time_range=(datetime(2019, 1, 1), None))
    assert {h.window[0] for h in late} == set(range(100, 110))
    early = idx.search(q, k=50, time_range=(None, datetime(2017, 1, 1)))
    assert len(early) == 10
    src = idx.search(q, k=50, source="/data/scene_1")
    assert src and all(h.path == "/data/scene_1.tif" for h in src)
    fc = hits_to_geojson(near)
    assert fc["type"] == "FeatureCollection" and fc["features"][0]["geometry"]["type"] == "Polygon"


def test_model_mismatch_and_missing_index(tmp_path):
    idx = _index(tmp_path)
    idx.add(_rows(3)[0])
    with pytest.raises(IndexMismatchError, match="v1"):
        _index(tmp_path, version="v2")
    with pytest.raises(IndexMismatchError):
        idx.search(np.ones(DIM), query_model_version="v2")
    with pytest.raises(InputError, match="dims"):
        idx.search(np.ones(DIM + 2))
    with pytest.raises(NotFoundError, match="no skylens index"):
        ChipIndex.open(tmp_path / "elsewhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a skylens index"):
        ChipIndex.create_or_open(tmp_path / "junk", model_name="m", model_version="v1", embed_dim=DIM)
    assert ChipIndex.open(tmp_path / "idx").count() == 3


def test_ann_index_finds_exact_duplicates(tmp_path):
    idx = _index(tmp_path)
    rows, vecs = _rows(12000, seed=3)
    for i in range(0, 12000, 4000):
        idx.add(rows[i : i + 4000])
    assert idx.build_ann(num_partitions=16, num_sub_vectors=4)
    assert idx.stats()["ann"]["type"] == "IVF_PQ"
    hits = [idx.search(vecs[i], k=1)[0].window[0] for i in (5, 777, 11999)]
    assert hits == [5, 777, 11999]
    assert idx.search(vecs[5], k=3, exact=True)[0].window[0] == 5
