"""MemoryVectors: exact batched search over an index's vectors held in memory.

Checked against LanceDB's own exact search on seeded random vectors, through adds, compaction
(row ids move) and a stale snapshot, with the memory limit and bad queries refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skylens.errors import IndexMismatchError, InputError
from skylens.index import ChipIndex
from skylens.index.memory import MemoryVectors
from test_index_store import MODEL, make_rows, unit


@pytest.fixture
def filled(tmp_path) -> ChipIndex:
    idx = ChipIndex.create_or_open(tmp_path / "idx", **MODEL)
    rng = np.random.default_rng(7)
    for b in range(3):  # three fragments
        idx.add(make_rows(unit(rng, 40), start=40 * b, path=f"/archive/{b}.tif"))
    return idx


def _same(index: ChipIndex, got, queries: np.ndarray, k: int) -> None:
    for q, hits in zip(queries, got, strict=True):
        want = index.search(q, k=k, exact=True)
        assert [h.id for h in hits] == [h.id for h in want]
        assert [h.score for h in hits] == pytest.approx([h.score for h in want], abs=2e-6)
        assert [h.path for h in hits] == [h.path for h in want]
        assert [h.footprint for h in hits] == [h.footprint for h in want]


def test_batched_search_equals_exact_lancedb_search(filled):
    mem = MemoryVectors(filled)
    queries = unit(np.random.default_rng(1), 9)
    got = filled.search_many(queries * 3.0, k=5, memory=mem)  # any length: normalised
    _same(filled, got, queries, 5)
    assert mem.loads == 1
    # without memory, the same answers one by one; k past the row count gives every chip
    assert [[h.id for h in hs] for hs in filled.search_many(queries, k=5)] == [
        [h.id for h in hs] for hs in got
    ]
    everything = filled.search_many(queries[:2], k=500, memory=mem)
    assert [len(h) for h in everything] == [120, 120]
    assert mem.loads == 1  # nothing changed: no reload


def test_added_chips_are_seen_and_compaction_moves_nothing_wrong(filled, tmp_path):
    mem = MemoryVectors(filled)
    rng = np.random.default_rng(2)
    queries = unit(rng, 4)
    filled.search_many(queries, k=3, memory=mem)
    new = make_rows(unit(rng, 5), start=1000, path="/archive/new.tif")
    ChipIndex.open(tmp_path / "idx").add(new)  # another handle, as another process would
    [hits] = filled.search_many(new[2]["vector"], k=1, memory=mem)
    assert hits[0].id == new[2]["id"] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert mem.loads == 2
    filled.compact()  # rewrites the files: every row id changes
    _same(filled, filled.search_many(queries, k=6, memory=mem), queries, 6)
    assert mem.loads == 3


def test_a_stale_snapshot_is_caught_by_the_ids(filled):
    """Rows that moved without the version check noticing are found out, reloaded, answered."""
    mem = MemoryVectors(filled)
    queries = unit(np.random.default_rng(3), 3)
    filled.search_many(queries, k=4, memory=mem)
    old = mem._snap
    filled.compact()
    mem._snap = dataclasses.replace(old, version=filled.version)
    _same(filled, filled.search_many(queries, k=4, memory=mem), queries, 4)
    assert mem._snap is not old and mem.loads == 2


def test_limits_and_bad_queries(filled, tmp_path):
    small = MemoryVectors(filled, max_bytes=100)
    assert not small.fits() and small.nbytes_needed() == 120 * MODEL["embed_dim"] * 4
    with pytest.raises(InputError, match="more than the 0 MiB allowed"):
        filled.search_many(unit(np.random.default_rng(4), 1), memory=small)
    mem = MemoryVectors(filled)
    with pytest.raises(InputError, match="dimensions"):
        filled.search_many(np.ones((2, 3), np.float32), memory=mem)
    with pytest.raises(InputError, match="all zeros or not finite"):
        filled.search_many(np.zeros((1, MODEL["embed_dim"])), memory=mem)
    with pytest.raises(InputError, match="k must be"):
        filled.search_many(unit(np.random.default_rng(4), 1), k=0, memory=mem)
    with pytest.raises(IndexMismatchError):
        filled.search_many(
            unit(np.random.default_rng(4), 1), query_model_version="other", memory=mem
        )
    other = ChipIndex.create_or_open(tmp_path / "other", **MODEL)
    with pytest.raises(ValueError, match="another index"):
        other.search_many(unit(np.random.default_rng(4), 1), memory=mem)
    assert mem.loads == 0  # refused before any work


def test_empty_index(tmp_path):
    idx = ChipIndex.create_or_open(tmp_path / "empty", **MODEL)
    got = idx.search_many(unit(np.random.default_rng(5), 2), memory=MemoryVectors(idx))
    assert got == [[], []]


def test_bfloat16_candidates_rescored_exactly_equal_the_exact_top_k():
    """The coarse bfloat16 pass only picks candidates; scores and order are exact float32."""
    import torch

    from skylens.index.memory import _coarse_then_exact

    rng = np.random.default_rng(11)
    matrix = torch.from_numpy(unit(rng, 5000, dim=16))
    queries = torch.from_numpy(unit(rng, 40, dim=16))
    for k in (1, 10, 50):
        scores, rows = _coarse_then_exact(queries, matrix.to(torch.bfloat16), matrix, k)
        want_scores, want_rows = torch.topk(queries @ matrix.T, k, dim=1)
        assert torch.equal(rows, want_rows)
        assert torch.allclose(scores, want_scores, atol=1e-6)


def test_a_large_index_searched_through_bfloat16_matches_lancedb(tmp_path, monkeypatch):
    """At >= BF16_MIN_ROWS the bfloat16 copy is used (forced here, whatever this CPU's timing)."""
    import torch

    from skylens.index import memory

    idx = ChipIndex.create_or_open(tmp_path / "big", **MODEL)
    rng = np.random.default_rng(12)
    idx.add(make_rows(unit(rng, memory.BF16_MIN_ROWS + 100), path="/archive/big.tif"))
    monkeypatch.setattr(memory, "_bf16_if_faster", lambda m: m.to(torch.bfloat16))
    mem = MemoryVectors(idx)
    queries = unit(rng, 6)
    _same(idx, idx.search_many(queries, k=8, memory=mem), queries, 8)
    assert mem._snap.coarse is not None
    assert mem.nbytes_needed() == (memory.BF16_MIN_ROWS + 100) * MODEL["embed_dim"] * 6
