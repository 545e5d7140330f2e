"""ChipIndex: creation, model checks, idempotent and atomic adds, filters, ranking, ANN, GeoJSON.

Vectors are seeded random unit vectors, so rankings are checked against numpy brute force.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import skylens.index.store as store
from skylens.errors import IndexMismatchError, InputError, NotFoundError, SkylensError
from skylens.index import ChipIndex, SearchHit, hits_to_geojson

DIM = 16
MODEL = {"model_name": "test-model", "model_version": "test-v1", "embed_dim": DIM}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def square(lon: float, lat: float, half: float = 0.01) -> dict:
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


def make_rows(vectors: np.ndarray, *, path="/archive/scene.tif", start=0, **extra) -> list[dict]:
    """One row per vector; chip i has window (256 * i, 0, 256, 256) and a footprint at lon i/100."""
    rows = []
    for i, v in enumerate(vectors, start):
        window = [256 * i, 0, 256, 256]
        row = {
            "id": ChipIndex.chip_id(f"digest-{path}", window, MODEL["model_version"]),
            "path": path,
            "window": window,
            "bounds": [500000.0 + 2560 * i, 4e6, 500000.0 + 2560 * (i + 1), 4e6 + 2560],
            "crs": "EPSG:32618",
            "footprint": square(i / 100, 10.0),
            "acquired": datetime(2020, 1, 1) + timedelta(days=i),
            "bands": "3,2,1",
            "source_digest": f"digest-{path}",
            "model_name": MODEL["model_name"],
            "model_version": MODEL["model_version"],
            "vector": v,
        }
        row.update(extra)
        rows.append(row)
    return rows


@pytest.fixture
def index(tmp_path) -> ChipIndex:
    return ChipIndex.create_or_open(tmp_path / "idx", **MODEL)


def test_create_then_open(tmp_path, index):
    meta = json.loads((tmp_path / "idx" / store.META_FILE).read_text())
    assert meta["model_name"] == "test-model" and meta["model_version"] == "test-v1"
    assert meta["embed_dim"] == DIM and meta["schema_version"] == store.SCHEMA_VERSION
    assert {"created", "skylens_version"} <= meta.keys()
    index.add(make_rows(unit(np.random.default_rng(0), 3)))
    for again in (
        ChipIndex.open(tmp_path / "idx"),
        ChipIndex.create_or_open(tmp_path / "idx", **MODEL),
    ):
        assert (again.model_name, again.model_version, again.embed_dim) == (
            "test-model",
            "test-v1",
            DIM,
        )
        assert again.directory == tmp_path / "idx" and again.count() == 3


def test_open_refuses_what_is_not_an_index(tmp_path):
    with pytest.raises(NotFoundError, match="nowhere"):
        ChipIndex.open(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hello")
    with pytest.raises(NotFoundError, match="folder"):
        ChipIndex.open(tmp_path / "folder")
    with pytest.raises(InputError, match="not a skylens index"):
        ChipIndex.create_or_open(tmp_path / "folder", **MODEL)
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["notes.txt"]


def test_another_model_is_refused_everywhere(tmp_path, index):
    index.add(make_rows(unit(np.random.default_rng(0), 4)))
    other = MODEL | {"model_name": "other-model", "model_version": "other-v9"}
    with pytest.raises(IndexMismatchError) as info:
        ChipIndex.create_or_open(tmp_path / "idx", **other)
    msg = str(info.value)
    assert "test-model" in msg and "other-model" in msg and str(tmp_path / "idx") in msg
    assert "re-index" in msg  # an index of an older default model says how to move on
    with pytest.raises(IndexMismatchError):
        ChipIndex.create_or_open(tmp_path / "idx", **(MODEL | {"embed_dim": DIM * 2}))
    with pytest.raises(IndexMismatchError, match="other-v9"):
        index.search(unit(np.random.default_rng(1), 1)[0], query_model_version="other-v9")
    stray = make_rows(unit(np.random.default_rng(2), 2), path="/other.tif")
    stray[1]["model_version"] = "other-v9"
    with pytest.raises(IndexMismatchError):
        index.add(stray)
    assert index.count() == 4
    assert index.search(unit(np.random.default_rng(1), 1)[0], query_model_version="test-v1")


def test_chip_id_is_stable_and_distinguishes_inputs():
    digest = "0123456789abcdef0123456789abcdef"
    # a changed id would make every existing index re-embed everything: pin the value
    assert ChipIndex.chip_id(digest, (0, 256, 256, 256), "skylens-lite-abc") == (
        "054ab765b5116ab5ded597b8ff1727bf"
    )
    ids = {
        ChipIndex.chip_id(digest, (0, 256, 256, 256), "skylens-lite-abc"),
        ChipIndex.chip_id(digest, (256, 0, 256, 256), "skylens-lite-abc"),
        ChipIndex.chip_id(digest, (0, 256, 256, 256), "skylens-lite-abd"),
        ChipIndex.chip_id("f" + digest[1:], (0, 256, 256, 256), "skylens-lite-abc"),
    }
    assert len(ids) == 4


def test_add_is_idempotent(index):
    rows = make_rows(unit(np.random.default_rng(0), 50))
    assert index.add(rows) == 50
    assert index.add(rows) == 0
    more = make_rows(unit(np.random.default_rng(1), 50), start=25)  # 25 stored ids, 25 new
    assert index.add(more) == 25
    assert index.count() == 75
    fresh = make_rows(unit(np.random.default_rng(2), 2), start=500)
    assert index.add([fresh[0], fresh[0], fresh[1]]) == 2  # duplicates inside one batch
    assert index.count() == 77
    assert index.add([]) == 0


def test_existing_ids_for_resume(index):
    rows = make_rows(unit(np.random.default_rng(0), 40))
    index.add(rows[:30])
    ids = [r["id"] for r in rows]
    assert index.existing_ids(ids) == set(ids[:30])
    assert index.existing_ids([]) == set()
    many = ids + [f"absent-{i}" for i in range(2 * store.ID_CHUNK)]  # several IN (...) chunks
    assert index.existing_ids(many) == set(ids[:30])
    assert index.existing_ids(["it's quoted"]) == set()


def test_missing_id_is_derived_from_digest_window_and_model(index):
    row = make_rows(unit(np.random.default_rng(0), 1))[0]
    del row["id"]
    assert index.add([row]) == 1
    expected = ChipIndex.chip_id(row["source_digest"], row["window"], "test-v1")
    assert index.existing_ids([expected]) == {expected}


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda r: r.update(vector=np.ones(DIM + 1, np.float32)), "17 dimensions"),
        (lambda r: r.update(vector=np.zeros(DIM, np.float32)), "all zeros"),
        (lambda r: r.update(vector=np.full(DIM, np.nan, np.float32)), "not finite"),
        (lambda r: r.update(window=[0, 0, 256]), "window"),
        (lambda r: r.update(footprint={"type": "Polygon", "coordinates": []}), "footprint"),
        (lambda r: r.pop("vector"), "needs"),
    ],
)
def test_bad_batch_leaves_table_untouched(index, damage, match):
    index.add(make_rows(unit(np.random.default_rng(0), 10)))
    version = index.stats()["version"]
    batch = make_rows(unit(np.random.default_rng(1), 10), start=100)
    damage(batch[7])
    with pytest.raises(InputError, match=match):
        index.add(batch)
    assert index.count() == 10
    assert index.stats()["version"] == version
    assert index.existing_ids([r["id"] for r in batch]) == set()


def test_ranking_matches_numpy_brute_force(index):
    rng = np.random.default_rng(7)
    vecs = unit(rng, 500)
    rows = make_rows(vecs)
    index.add(rows)
    ids = np.array([r["id"] for r in rows])
    for q in unit(rng, 5):
        sims = vecs @ q
        order = np.argsort(-sims)[:10]
        hits = index.search(q * 3.0, k=10)  # scale must not matter: cosine
        assert [h.id for h in hits] == list(ids[order])
        np.testing.assert_allclose([h.score for h in hits], sims[order], atol=1e-5)
        assert all(-1 <= h.score <= 1 for h in hits)
    # a stored vector is its own best match, score 1
    top = index.search(vecs[123], k=1)[0]
    assert top.id == rows[123]["id"] and top.score == pytest.approx(1.0, abs=1e-5)
    assert top.window == rows[123]["window"] and top.crs == "EPSG:32618"
    assert top.bounds == rows[123]["bounds"] and top.footprint == rows[123]["footprint"]
    assert top.acquired == rows[123]["acquired"] and top.path == "/archive/scene.tif"


def test_search_validates_its_inputs(index):
    index.add(make_rows(unit(np.random.default_rng(0), 5)))
    q = unit(np.random.default_rng(1), 1)[0]
    with pytest.raises(InputError, match="dimensions"):
        index.search(np.ones(DIM + 2, np.float32))
    with pytest.raises(InputError, match="zeros"):
        index.search(np.zeros(DIM, np.float32))
    with pytest.raises(InputError, match="k must"):
        index.search(q, k=0)
    with pytest.raises(InputError, match="bbox"):
        index.search(q, bbox=(0, 50, 1, 40))  # S > N
    with pytest.raises(InputError, match="bbox"):
        index.search(q, bbox=(0, 1, 2))
    with pytest.raises(InputError, match="time range"):
        index.search(q, time_range=(datetime(2021, 1, 1), datetime(2020, 1, 1)))
    assert len(index.search(q, k=100)) == 5


def test_bbox_filter_ranks_only_chips_inside(index):
    rng = np.random.default_rng(3)
    vecs = unit(rng, 100)
    rows = make_rows(vecs)  # footprint centres at lon 0.00 .. 0.99, lat 10
    index.add(rows)
    q = unit(rng, 1)[0]
    hits = index.search(q, k=100, bbox=(0.295, 9.9, 0.505, 10.1))
    inside = [i for i in range(100) if 0.29 <= i / 100 <= 0.51]  # footprints are 0.02 wide
    expected = sorted(inside, key=lambda i: -float(vecs[i] @ q))
    assert [h.id for h in hits] == [rows[i]["id"] for i in expected]
    assert index.search(q, bbox=(10.0, 10.0, 11.0, 11.0)) == []
    assert index.search(q, bbox=(0.0, 20.0, 1.0, 21.0)) == []


def test_bbox_across_the_antimeridian_and_chips_without_footprint(index):
    rng = np.random.default_rng(4)
    east = make_rows(unit(rng, 1), path="/east.tif", footprint=square(179.5, 0.0))
    west = make_rows(unit(rng, 1), path="/west.tif", footprint=square(-179.5, 0.0))
    middle = make_rows(unit(rng, 1), path="/middle.tif", footprint=square(0.0, 0.0))
    plain = make_rows(unit(rng, 1), path="/photo.png", footprint=None, bounds=None, crs=None)
    index.add(east + west + middle + plain)
    hits = index.search(unit(rng, 1)[0], k=10, bbox=(170.0, -10.0, -170.0, 10.0))
    assert {h.path for h in hits} == {"/east.tif", "/west.tif"}
    assert len(index.search(unit(rng, 1)[0], k=10)) == 4
    photo = next(h for h in index.search(plain[0]["vector"], k=1))
    assert photo.path == "/photo.png" and photo.footprint is None and photo.bounds is None


def test_time_filter(index):
    rng = np.random.default_rng(5)
    rows = make_rows(unit(rng, 30))  # acquired 2020-01-01 + i days
    rows[29]["acquired"] = None
    index.add(rows)
    q = unit(rng, 1)[0]
    hits = index.search(q, k=30, time_range=(datetime(2020, 1, 11), datetime(2020, 1, 20)))
    assert sorted(h.acquired.day for h in hits) == list(range(11, 21))  # inclusive both ends
    after = index.search(q, k=30, time_range=(datetime(2020, 1, 25), None))
    assert len(after) == 5  # days 25..29; the chip without a date (day 30) never matches
    before = index.search(q, k=30, time_range=(None, datetime(2020, 1, 3)))
    assert len(before) == 3
    # aware datetimes compare in UTC: 2020-01-02 01:00+02:00 is 2020-01-01 23:00 UTC
    aware = datetime(2020, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert len(index.search(q, k=30, time_range=(None, aware))) == 1


def test_source_filter_prefix_and_glob(index):
    rng = np.random.default_rng(6)
    paths = ["/data/2016/a_1.tif", "/data/2016/ab1.tif", "/data/2017/b.tif", "/other/100%.png"]
    for i, p in enumerate(paths):
        index.add(make_rows(unit(rng, 2), path=p, start=10 * i))
    q = unit(rng, 1)[0]

    def found(source):
        return {h.path for h in index.search(q, k=50, source=source)}

    assert found("/data/2016/") == {"/data/2016/a_1.tif", "/data/2016/ab1.tif"}
    assert found("/data/2016/a_") == {"/data/2016/a_1.tif"}  # '_' is literal, not a wildcard
    assert found("/data/*/b.tif") == {"/data/2017/b.tif"}
    assert found("*.tif") == set(paths[:3])
    assert found("/data/201?/a*") == {"/data/2016/a_1.tif", "/data/2016/ab1.tif"}
    assert found("/other/100%") == {"/other/100%.png"}
    assert found("/nothing") == set()


def test_filters_combine(index):
    rng = np.random.default_rng(8)
    index.add(make_rows(unit(rng, 50), path="/a.tif"))
    index.add(make_rows(unit(rng, 50), path="/b.tif"))
    hits = index.search(
        unit(rng, 1)[0],
        k=100,
        bbox=(0.0, 9.0, 0.2, 11.0),
        time_range=(datetime(2020, 1, 5), None),
        source="/b",
    )
    days = sorted(h.acquired.day for h in hits)
    assert {h.path for h in hits} == {"/b.tif"} and days == list(range(5, 23))


def test_geojson_output(index):
    rng = np.random.default_rng(9)
    rows = make_rows(unit(rng, 1)) + make_rows(unit(rng, 1), path="/p.png", start=1, footprint=None)
    rows[0]["caption"] = "a harbour"
    index.add(rows)
    hits = index.search(rows[0]["vector"], k=2)
    fc = hits_to_geojson(hits)
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    first, second = fc["features"]
    assert first["type"] == "Feature" and first["id"] == rows[0]["id"]
    assert first["geometry"] == rows[0]["footprint"]
    assert first["properties"]["caption"] == "a harbour"
    assert first["properties"]["acquired"] == "2020-01-01T00:00:00"
    assert "footprint" not in first["properties"]
    assert first["properties"]["score"] >= second["properties"]["score"]
    assert second["geometry"] is None and second["properties"]["path"] == "/p.png"
    json.dumps(fc)  # plain JSON all the way down
    assert isinstance(hits[0], SearchHit) and hits[0].to_dict()["window"] == [0, 0, 256, 256]


def test_stats(index):
    index.add(make_rows(unit(np.random.default_rng(0), 6), path="/a.tif"))
    index.add(make_rows(unit(np.random.default_rng(1), 4), path="/b.tif"))
    s = index.stats()
    assert s["rows"] == 10 and s["sources"] == 2 and s["model"] == "test-model"
    assert s["embed_dim"] == DIM and s["has_ann"] is False and s["bytes_on_disk"] > 0


def test_reader_sees_writes_and_survives_compaction(tmp_path, index, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_EVERY", 4)
    reader = ChipIndex.open(tmp_path / "idx")
    rng = np.random.default_rng(10)
    batches = [make_rows(unit(rng, 8), start=8 * b) for b in range(10)]
    for b, rows in enumerate(batches):
        index.add(rows)
        assert reader.count() == 8 * (b + 1)  # no reopen needed
        top = reader.search(rows[0]["vector"], k=1)[0]
        assert top.id == rows[0]["id"]
    assert index.stats()["fragments"] < 10  # merged along the way
    all_ids = [r["id"] for rows in batches for r in rows]
    assert reader.existing_ids(all_ids) == set(all_ids)


def test_compaction_without_pylance(index, monkeypatch):
    """lancedb alone (no ``pylance``) still compacts, through its own ``optimize``."""

    def no_pylance(self, **kw):
        raise ImportError("no pylance")

    monkeypatch.setattr(type(index._table), "to_lance", no_pylance)
    rng = np.random.default_rng(12)
    rows = [make_rows(unit(rng, 5), start=5 * b) for b in range(6)]
    for batch in rows:
        index.add(batch)
    report = index.compact()
    assert report["fragments_before"] == 6 and report["fragments_after"] == 1
    assert index.count() == 30 and index.search(rows[3][2]["vector"], k=1)[0].id == rows[3][2]["id"]


def test_killed_writer_loses_nothing_committed(tmp_path, index):
    """SIGKILL a process mid-way through a stream of adds and compactions; the index survives."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import skylens.index.store as store
        from skylens.index import ChipIndex
        store.COMPACT_EVERY = 3  # also kill it inside compactions
        index = ChipIndex.open({str(tmp_path / "idx")!r})
        rng = np.random.default_rng(0)
        for b in range(1_000_000):
            v = rng.standard_normal((256, {DIM})).astype(np.float32)
            rows = [dict(id=f"{{b}}-{{i}}", path=f"/batch{{b}}.tif", window=[i, 0, 1, 1], vector=x)
                    for i, x in enumerate(v)]
            index.add(rows)
            print(b, flush=True)
        """
    )
    env = os.environ | {"PYTHONPATH": str(Path(store.__file__).parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        committed = [int(child.stdout.readline()) for _ in range(8)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert committed == list(range(8))
    reopened = ChipIndex.open(tmp_path / "idx")
    n = reopened.count()
    assert n % 256 == 0 and n >= 8 * 256  # whole batches only
    lance = pytest.importorskip("lance")
    lance.dataset(str(tmp_path / "idx" / store.DB_DIR / f"{store.TABLE}.lance")).validate()
    ids = [f"{b}-{i}" for b in range(n // 256) for i in range(256)]
    assert reopened.existing_ids(ids) == set(ids)
    rng = np.random.default_rng(0)
    first = rng.standard_normal((256, DIM)).astype(np.float32)
    assert reopened.search(first[17], k=1)[0].id == "0-17"
    # and writing goes on: re-adding is a no-op, new rows land
    assert reopened.add([dict(id="0-0", path="/x", window=[0, 0, 1, 1], vector=first[0])]) == 0
    assert reopened.add(make_rows(unit(rng, 3), start=10_000)) == 3
    assert reopened.count() == n + 3


def test_concurrent_writers_never_duplicate(tmp_path, index):
    """Two processes add the same 30 batches, in opposite orders: every chip is stored once."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from skylens.index import ChipIndex
        index = ChipIndex.open({str(tmp_path / "idx")!r})
        v = np.random.default_rng(0).standard_normal((30, 32, {DIM})).astype(np.float32)
        order = range(30) if sys.argv[1] == "forward" else reversed(range(30))
        added = 0
        for b in order:
            added += index.add([dict(id=f"{{b}}-{{i}}", path="/p.tif", window=[i, b, 1, 1], vector=x)
                                for i, x in enumerate(v[b])])
        print(added)
        """
    )
    env = os.environ | {"PYTHONPATH": str(Path(store.__file__).parents[2])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, way], stdout=subprocess.PIPE, text=True, env=env
        )
        for way in ("forward", "backward")
    ]
    added = [int(c.communicate(timeout=120)[0]) for c in children]
    assert all(c.returncode == 0 for c in children)
    assert sum(added) == index.count() == 30 * 32
    ids = index._table.search().select(["id"]).limit(None).to_arrow().column("id").to_pylist()
    assert len(set(ids)) == len(ids)


def test_ann_finds_exact_duplicates(tmp_path):
    dim = 32
    index = ChipIndex.create_or_open(tmp_path / "ann", **(MODEL | {"embed_dim": dim}))
    rng = np.random.default_rng(11)
    vecs = unit(rng, 20_000, dim)
    rows = [
        {"id": f"c{i}", "path": f"/s{i // 1000}.tif", "window": [i, 0, 1, 1], "vector": v}
        for i, v in enumerate(vecs)
    ]
    small = ChipIndex.create_or_open(tmp_path / "small", **(MODEL | {"embed_dim": dim}))
    small.add(rows[:100])
    assert small.build_ann() is False and not small.has_ann()  # too small to need one
    for start in range(0, len(rows), 5000):
        index.add(rows[start : start + 5000])
    reader = ChipIndex.open(tmp_path / "ann")  # opened before the build
    assert index.build_ann() is True and index.has_ann()
    ann = index.stats()["ann"]
    assert ann["index_type"] == "IVF_SQ" and ann["num_partitions"] == 5 and ann["nprobes"] == 4
    assert reader.search(vecs[0], k=1)[0].id == "c0" and reader.meta["ann"] == index.meta["ann"]
    for i in rng.choice(len(vecs), 20, replace=False):
        top = index.search(vecs[i], k=3)
        assert top[0].id == f"c{i}" and top[0].score == pytest.approx(1.0, abs=1e-4)
        assert index.search(vecs[i], k=1, exact=True)[0].id == f"c{i}"
    # rows added after the build are found too, and a selective filter still fills k
    late = unit(rng, 1, dim)[0]
    index.add([{"id": "late", "path": "/late.tif", "window": [0, 0, 1, 1], "vector": late}])
    assert index.search(late, k=1)[0].id == "late"
    assert len(index.search(vecs[0], k=10, source="/s7.tif")) == 10
    assert ChipIndex.open(tmp_path / "ann").stats()["has_ann"] is True


def test_get_returns_one_stored_row_or_none(index):
    rows = make_rows(unit(np.random.default_rng(0), 3))
    index.add(rows)
    row = index.get(rows[1]["id"])
    assert row["id"] == rows[1]["id"] and list(row["window"]) == list(rows[1]["window"])
    assert index.get("0" * 32) is None
    assert index.get("x' OR '1'='1") is None  # quoted, never interpreted


def test_fill_captions_only_fills_missing_ones_and_hybrid_search_fuses(index):
    rng = np.random.default_rng(11)
    vecs = unit(rng, 6)
    rows = make_rows(vecs)
    rows[0]["caption"] = "airplanes parked beside a terminal"
    index.add(rows)  # chips 1..5 uncaptioned
    assert index.existing_ids([r["id"] for r in rows], captioned_only=True) == {rows[0]["id"]}
    again = make_rows(vecs, caption="a quiet harbour with boats")
    assert index.add(again, fill_captions=True) == 0  # nothing inserted, 5 captions filled
    assert index.count() == 6 and index.captioned_count() == 6
    stored = {h.id: h.caption for h in index.search(vecs[0], k=6)}
    assert stored[rows[0]["id"]] == "airplanes parked beside a terminal"  # never overwritten
    assert {c for i, c in stored.items() if i != rows[0]["id"]} == {"a quiet harbour with boats"}
    # hybrid: the query vector is nearest to chip 5, but the words match chip 0's caption
    hits = index.search(vecs[5], k=6, text="airplanes terminal")
    assert hits[0].id == rows[0]["id"] and hits[0].caption_score > 0
    assert all(h.caption_score is None for h in hits[1:])
    exact = {h.id: h.score for h in index.search(vecs[5], k=6)}
    assert all(h.score == pytest.approx(exact[h.id], abs=1e-5) for h in hits)
    fused = [h.fused_score for h in hits]
    assert fused == sorted(fused, reverse=True)
    assert index.stats()["captioned"] == 6 and index.stats()["has_caption_index"]


def test_damaged_index_names_the_index_and_the_fix(tmp_path, index):
    """A missing data file or a truncated manifest: DamagedIndexError naming the index folder
    and the fix, from every entry point, never a raw LanceDB error."""
    v = unit(np.random.default_rng(30), 12)
    index.add(make_rows(v))
    table_dir = tmp_path / "idx" / store.DB_DIR / f"{store.TABLE}.lance"
    next((table_dir / "data").glob("*.lance")).unlink()
    reopened = ChipIndex.open(tmp_path / "idx")
    calls = [
        lambda: reopened.search(v[0], k=3),
        lambda: reopened.search_many(v[:2], k=3),
        reopened.stats,
        lambda: reopened.existing_ids(["x"]),
        lambda: reopened.add(make_rows(unit(np.random.default_rng(31), 2), start=100)),
        lambda: reopened.scan(["id"]),
    ]
    for call in calls:
        with pytest.raises(store.DamagedIndexError) as info:
            call()
        msg = str(info.value)
        assert "index 'idx'" in msg and "data file is missing" in msg
        assert str(tmp_path) not in msg  # the folder's name, not where it lives
        assert "rebuild" in msg and "Traceback" not in msg and ".rs:" not in msg
        assert isinstance(info.value, SkylensError) and info.value.http_status == 503

    index2 = ChipIndex.create_or_open(
        tmp_path / "idx2",
        model_name=MODEL["model_name"],
        model_version=MODEL["model_version"],
        embed_dim=MODEL["embed_dim"],
    )
    index2.add(make_rows(v))
    for manifest in (tmp_path / "idx2" / store.DB_DIR / f"{store.TABLE}.lance" / "_versions").glob(
        "*.manifest"
    ):
        manifest.write_bytes(manifest.read_bytes()[:10])
    with pytest.raises(store.DamagedIndexError, match="manifest is truncated") as info:
        ChipIndex.open(tmp_path / "idx2").search(v[0], k=1)
    assert "index 'idx2'" in str(info.value)


def test_extreme_dates_are_calendar_ends(index):
    """Aware dates at the ends of the calendar (issue 18 finding 5) that fall outside years
    1..9999 in UTC are the calendar's ends (no bound), never an OverflowError."""
    rows = make_rows(unit(np.random.default_rng(32), 3))  # acquired 2020-01-01 .. 03
    index.add(rows)
    q = unit(np.random.default_rng(33), 1)[0]
    ids = {r["id"] for r in rows}
    for span in [
        ("0001-01-01T00:00:00+01:00", None),
        (None, "9999-12-31T23:59:59-14:00"),
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"),
        (datetime(1, 1, 1), None),
    ]:
        assert {h.id for h in index.search(q, k=10, time_range=span)} == ids, span
