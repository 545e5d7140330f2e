"""Exact batched search over an index's vectors held in memory: the service's hot path.

A text query costs the service little to embed (micro-batched, ``skylens.service.batching``); the
index search is the price. LanceDB answers one query at a time and, on this model's embeddings,
its IVF index must probe most cells to keep recall (``store.py``), so each query scans most of the
table: about 20 ms of CPU at 100,000 chips. Held in memory, the unit vectors of the whole index
answer a *batch* of queries with one matrix product: the matrix is read once for the batch, so
the cost per query falls with the batch (bench/results/load.json: ``parts``), and the scores are
exact cosine similarities (recall 1.0, where the ANN index gives ~0.96). This is how FAISS'
``IndexFlatIP`` answers batched queries (Johnson et al., "Billion-scale similarity search with
GPUs", 2017) — a GEMM — here through torch, already a dependency.

Only unfiltered vector searches take this path; filters (bbox, time, source) and caption matches
go to LanceDB, which evaluates them. The vectors are reloaded when the table's version changes
(another process added chips, or ``compact`` rewrote the files), and every hit is checked against
the id held in memory, so a stale cache never returns another chip's metadata.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from skylens.errors import InputError

if TYPE_CHECKING:
    from skylens.index.store import ChipIndex, SearchHit

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: ~460,000 chips of 768-d float32 + bfloat16
BF16_MIN_ROWS = 4096  # below this a float32 product is fast enough: no bfloat16 copy


@dataclass(frozen=True)
class _Snapshot:
    version: int
    matrix: object  # torch.Tensor (N, D) float32, rows of unit length (zero rows stay zero)
    coarse: object | None  # the same in bfloat16 when that multiplies faster here, else None
    ids: np.ndarray  # (N,) object: the chip ids
    row_ids: np.ndarray  # (N,) uint64: LanceDB row ids at ``version``


class MemoryVectors:
    """The vectors of ``index`` in memory, for exact top-k search of many queries at once.

    Args:
        index: the open chip index.
        max_bytes: refuse (``InputError``) to hold more than this many bytes of vectors.

    Attributes:
        loads: how many times the vectors were (re)loaded from disk.
    """

    def __init__(
        self, index: ChipIndex, *, max_bytes: int = DEFAULT_MAX_BYTES, use_bf16: bool = True
    ) -> None:
        self.index = index
        self.max_bytes = int(max_bytes)
        self.use_bf16 = use_bf16
        self.loads = 0
        self._snap: _Snapshot | None = None
        self._lock = threading.Lock()

    def nbytes_needed(self) -> int:
        """Bytes the index's vectors may take in memory (float32, plus a bfloat16 copy)."""
        rows = self.index.count()
        per_value = 6 if self.use_bf16 and rows >= BF16_MIN_ROWS else 4
        return rows * self.index.embed_dim * per_value

    def fits(self) -> bool:
        return self.nbytes_needed() <= self.max_bytes

    def load(self) -> int:
        """Load the vectors now (they load on the first search otherwise); returns the rows held.

        Raises:
            InputError: they need more than ``max_bytes``.
        """
        return len(self._current().ids)

    def _current(self) -> _Snapshot:
        """The snapshot of the table's current version, loading it when the table changed."""
        version = self.index.version
        snap = self._snap
        if snap is not None and snap.version == version:
            return snap
        with self._lock:
            snap = self._snap
            version = self.index.version
            if snap is None or snap.version != version:
                snap = self._load(version)
                self._snap = snap
            return snap

    def _load(self, version: int) -> _Snapshot:
        import torch

        need = self.nbytes_needed()
        if need > self.max_bytes:
            raise InputError(
                f"{self.index.directory}: its vectors need {need / 1024**2:.0f} MiB, more than "
                f"the {self.max_bytes / 1024**2:.0f} MiB allowed in memory; raise the limit or "
                "search through the ANN index"
            )
        table = (
            self.index._table.search()
            .select(["id", "vector"])
            .with_row_id(True)
            .limit(None)
            .to_arrow()
        )
        n = table.num_rows
        dim = self.index.embed_dim
        if n:
            flat = table.column("vector").combine_chunks().flatten().to_numpy()
            matrix = np.array(flat, dtype=np.float32).reshape(n, dim)
        else:
            matrix = np.zeros((0, dim), np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        np.divide(matrix, norms, out=matrix, where=norms > 0)
        self.loads += 1
        exact = torch.from_numpy(matrix)
        return _Snapshot(
            version=version,
            matrix=exact,
            coarse=_bf16_if_faster(exact) if self.use_bf16 else None,
            ids=np.asarray(table.column("id").to_pylist(), dtype=object),
            row_ids=table.column("_rowid").to_numpy().astype(np.uint64),
        )

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        """The ``k`` nearest chips to each row of ``queries`` (unit vectors), best first.

        Scores are exact cosine similarities, as ``ChipIndex.search`` gives them.
        """
        for _attempt in range(2):
            snap = self._current()
            hits = self._search(snap, queries, k)
            if hits is not None:
                return hits
            with self._lock:  # the table changed under us: reload and go again
                if self._snap is snap:
                    self._snap = None
        raise RuntimeError(f"{self.index.directory}: the index kept changing during a search")

    def _search(self, snap: _Snapshot, queries: np.ndarray, k: int) -> list[list[SearchHit]] | None:
        import torch

        from skylens.index.store import SEARCH_COLUMNS, _hit_from_row

        n = len(snap.ids)
        if n == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        k = min(int(k), n)
        q = torch.from_numpy(np.ascontiguousarray(queries, np.float32))
        with torch.inference_mode():
            if snap.coarse is None:
                top_scores, top_rows = torch.topk(q @ snap.matrix.T, k, dim=1)
            else:
                top_scores, top_rows = _coarse_then_exact(q, snap.coarse, snap.matrix, k)
        top_scores, top_rows = top_scores.numpy(), top_rows.numpy()
        wanted = np.unique(top_rows)
        rows = (
            self.index._table.take_row_ids([int(r) for r in snap.row_ids[wanted]])
            .select(list(SEARCH_COLUMNS))
            .with_row_id()
            .to_arrow()
            .to_pylist()
        )
        by_row_id = {r["_rowid"]: r for r in rows}
        meta = {}
        for row in wanted:
            r = by_row_id.get(int(snap.row_ids[row]))
            if r is None or r["id"] != snap.ids[row]:
                return None  # rows moved since the snapshot (compaction, deletion)
            meta[row] = r
        return [
            [_hit_from_row(meta[row], s) for row, s in zip(rows_q, scores_q, strict=True)]
            for rows_q, scores_q in zip(top_rows, top_scores, strict=True)
        ]


def _candidates(k: int, n: int) -> int:
    """bfloat16 candidates to re-score exactly for ``k`` hits (its 8-bit mantissa reorders
    near-ties; a wide margin keeps every true top-k hit among the candidates)."""
    return min(n, max(4 * k, k + 64))


def _coarse_then_exact(q, coarse, exact, k: int):
    """Top ``k`` by exact float32 scores among the best bfloat16 candidates of each query."""
    import torch

    c = _candidates(k, exact.shape[0])
    _, cand = torch.topk(q.to(torch.bfloat16) @ coarse.T, c, dim=1)  # (B, c)
    rescored = torch.einsum("bd,bcd->bc", q, exact[cand])  # exact scores of the candidates
    top_scores, pos = torch.topk(rescored, k, dim=1)
    return top_scores, torch.gather(cand, 1, pos)


def _bf16_if_faster(matrix):
    """A bfloat16 copy of ``matrix`` when a batched product with it beats float32 here.

    The product reads the whole matrix, so halving its bytes halves the time on CPUs with
    bfloat16 instructions (AVX512-BF16, AMX); elsewhere torch may convert on the fly and lose.
    Timed once on a slice at load (a few milliseconds).
    """
    import time

    import torch

    if matrix.shape[0] < BF16_MIN_ROWS:
        return None  # small: float32 is fast enough and exact
    part = matrix[:32768]
    q = torch.nn.functional.normalize(torch.ones(32, matrix.shape[1]), dim=1)
    with torch.inference_mode():
        coarse = part.to(torch.bfloat16)
        timings = {}
        for name, m, x in (("f32", part, q), ("bf16", coarse, q.to(torch.bfloat16))):
            x @ m.T  # warm up
            t = time.perf_counter()
            for _ in range(3):
                x @ m.T
            timings[name] = time.perf_counter() - t
    if timings["bf16"] > 0.8 * timings["f32"]:
        return None
    return matrix.to(torch.bfloat16)
