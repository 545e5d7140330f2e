"""MemoryVectors: exact batched search over an index's vectors held in memory.

Checked against LanceDB's own exact search on seeded random vectors, through adds, compaction
(row ids move), a snapshot that reads nothing from disk, int8 and bfloat16 candidate passes, with the memory limit and bad queries refused.
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


def test_a_search_answers_from_its_snapshot_and_reads_nothing_from_disk(filled, monkeypatch):
    """Metadata comes with the vectors: a search neither reads rows nor mixes two versions."""
    mem = MemoryVectors(filled)
    queries = unit(np.random.default_rng(3), 3)
    want = filled.search_many(queries, k=4, memory=mem)
    snap = mem._snap
    filled.compact()  # rewrites the files: a row-id lookup into the new files would now miss
    monkeypatch.setattr(type(filled), "version", property(lambda self: snap.version))
    monkeypatch.setattr(type(filled._table), "take_row_ids", None, raising=False)
    got = filled.search_many(queries, k=4, memory=mem)
    assert mem._snap is snap and mem.loads == 1
    assert [[dataclasses.asdict(h) for h in hs] for hs in got] == [
        [dataclasses.asdict(h) for h in hs] for hs in want
    ]


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


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_coarse_candidates_rescored_exactly_equal_the_exact_top_k(kind):
    """The coarse pass only picks candidates; scores and order are exact float32 — also on
    clustered vectors whose near-ties the low precision cannot separate."""
    import torch

    from skylens.index.memory import _Bf16Coarse, _coarse_then_exact, _Int8Coarse

    rng = np.random.default_rng(11)
    centres = unit(rng, 8, dim=16)
    clustered = centres[rng.integers(0, 8, 4000)] + 0.05 * rng.standard_normal((4000, 16))
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    for vectors in (unit(rng, 5000, dim=16), clustered.astype(np.float32)):
        matrix = torch.from_numpy(vectors)
        coarse = (_Int8Coarse if kind == "int8" else _Bf16Coarse)(matrix)
        queries = torch.from_numpy(unit(rng, 40, dim=16))
        for k in (1, 10, 50):
            scores, rows = _coarse_then_exact(queries, coarse, matrix, k)
            want_scores, want_rows = torch.topk(queries @ matrix.T, k, dim=1)
            assert torch.equal(rows, want_rows)
            assert torch.allclose(scores, want_scores, atol=1e-6)


def test_int8_copy_ranks_like_float32(monkeypatch):
    """Per-dimension scales: the integer products, times the query's own scale, track the
    float32 scores to well under the gap between neighbours — also split into several
    onnxruntime sessions."""
    import torch

    from skylens.index import memory

    rng = np.random.default_rng(13)
    matrix = torch.from_numpy(unit(rng, 3000, dim=64))
    matrix[:, 5] *= 0.01  # a nearly unused dimension keeps its own, finer scale
    matrix[:, 7] = 0  # and an unused one neither divides by zero nor swamps the query's scale
    queries = torch.from_numpy(unit(rng, 5, dim=64))
    exact = (queries @ matrix.T).double()
    whole = memory._Int8Coarse(matrix)
    monkeypatch.setattr(memory, "_SHARD_VALUES", 64 * 1000)
    sharded = memory._Int8Coarse(matrix)
    assert len(whole._sessions) == 1 and len(sharded._sessions) == 3
    values, rows = whole.top(queries, 3000)  # every row: the whole product, best first
    assert values.dtype == torch.int32 and rows.shape == (5, 3000)
    assert torch.all(values[:, :-1] >= values[:, 1:])
    approx = torch.zeros(5, 3000, dtype=torch.int32).scatter_(1, rows, values)
    full = sharded.top(queries, 3000)  # three sessions' candidates, merged
    assert torch.equal(torch.zeros_like(approx).scatter_(1, full[1], full[0]), approx)
    assert torch.equal(sharded.top(queries, 7)[0], values[:, :7])
    peak = (queries * whole.scale).abs().amax(dim=1, keepdim=True).double()
    error = torch.abs(approx.double() * peak / 127 - exact)
    assert error.max() < 0.01 and error.mean() < 0.002
    # the integer product is exact: the quantised query times the quantised rows
    ints = torch.round(matrix / torch.where(whole.scale > 0, whole.scale, 1)).to(torch.int32)
    a = torch.from_numpy(whole.quantise(queries)).to(torch.int32) - 128
    assert torch.equal(approx, a @ ints.T)


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_a_large_index_searched_through_a_coarse_copy_matches_lancedb(tmp_path, monkeypatch, kind):
    """At >= COARSE_MIN_ROWS a coarse copy is used (forced here, whatever this CPU's timing)."""

    from skylens.index import memory

    idx = ChipIndex.create_or_open(tmp_path / "big", **MODEL)
    rng = np.random.default_rng(12)
    idx.add(make_rows(unit(rng, memory.COARSE_MIN_ROWS + 100), path="/archive/big.tif"))
    chosen = memory._Int8Coarse if kind == "int8" else memory._Bf16Coarse
    monkeypatch.setattr(memory, "_fastest_coarse", chosen)
    mem = MemoryVectors(idx)
    queries = unit(rng, 6)
    _same(idx, idx.search_many(queries, k=8, memory=mem), queries, 8)
    assert mem.coarse_kind == kind
    assert mem.nbytes_needed() == (memory.COARSE_MIN_ROWS + 100) * MODEL["embed_dim"] * 6


def test_the_timed_choice_returns_a_working_copy_or_none():
    """Whatever this CPU picks, the copy it returns answers like float32."""
    import torch

    from skylens.index.memory import COARSE_MIN_ROWS, _coarse_then_exact, _fastest_coarse

    rng = np.random.default_rng(14)
    assert _fastest_coarse(torch.from_numpy(unit(rng, 100, dim=32))) is None  # small: exact
    matrix = torch.from_numpy(unit(rng, COARSE_MIN_ROWS, dim=32))
    coarse = _fastest_coarse(matrix)
    if coarse is not None:
        assert coarse.kind in ("int8", "bf16")
        queries = torch.from_numpy(unit(rng, 4, dim=32))
        _, rows = _coarse_then_exact(queries, coarse, matrix, 5)
        assert torch.equal(rows, torch.topk(queries @ matrix.T, 5, dim=1).indices)
