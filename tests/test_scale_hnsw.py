"""skylens.index.faiss_hnsw: the HNSW searcher answers like the exact store on a small index,
follows new rows, reuses its saved graph, and refuses what does not fit."""

import numpy as np
import pytest

from skylens.errors import InputError
from skylens.index import ChipIndex

faiss = pytest.importorskip("faiss")
from skylens.index.faiss_hnsw import HnswVectors  # noqa: E402

DIM = 16


def _unit(rng, n):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(v, start=0):
    return [
        {
            "id": f"c{start + i:05d}",
            "path": f"/a/{start + i}.tif",
            "window": [0, 0, 8, 8],
            "vector": x,
        }
        for i, x in enumerate(v)
    ]


@pytest.fixture
def filled(tmp_path):
    idx = ChipIndex.create_or_open(
        tmp_path / "idx", model_name="m", model_version="v", embed_dim=DIM
    )
    idx.add(_rows(_unit(np.random.default_rng(0), 2000)))
    return idx


def test_hnsw_matches_exact_search(filled):
    hnsw = HnswVectors(filled, ef_search=64)
    queries = _unit(np.random.default_rng(1), 20)
    got = filled.search_many(queries, k=10, memory=hnsw)
    exact = [filled.search(q, k=10, exact=True) for q in queries]
    overlap = np.mean(
        [len({h.id for h in g} & {h.id for h in e}) / 10 for g, e in zip(got, exact, strict=True)]
    )
    assert overlap >= 0.95
    for g, e in zip(got, exact, strict=True):  # scores are exact cosines, best first
        assert [h.score for h in g] == sorted((h.score for h in g), reverse=True)
        common = {h.id: h.score for h in e}
        assert all(abs(h.score - common[h.id]) < 1e-5 for h in g if h.id in common)
        assert g[0].path.startswith("/a/") and g[0].window == [0, 0, 8, 8]


def test_hnsw_follows_new_rows_and_reuses_its_graph(filled, tmp_path):
    hnsw = HnswVectors(filled)
    assert hnsw.load() == 2000 and hnsw.loads == 1
    saved = list(filled.directory.glob("hnsw-*.faiss"))
    assert len(saved) == 1
    new = _unit(np.random.default_rng(2), 3)
    filled.add(_rows(new, start=90_000))
    [hits] = filled.search_many(new[1], k=1, memory=hnsw)
    assert hits[0].id == "c90001" and hnsw.loads == 2
    assert len(list(filled.directory.glob("hnsw-*.faiss"))) == 1  # the old graph is dropped
    again = HnswVectors(ChipIndex.open(filled.directory))
    assert again.load() == 2003  # read from disk, same rows
    [hits] = again.search(new[2:3], 1)
    assert hits[0].id == "c90002"


def test_hnsw_refuses_what_does_not_fit(filled):
    with pytest.raises(InputError, match="MiB"):
        HnswVectors(filled, max_bytes=1000).load()
    other = HnswVectors(filled)
    with pytest.raises(ValueError, match="another index"):
        ChipIndex.open(filled.directory).search_many(
            _unit(np.random.default_rng(3), 1), memory=other
        )
