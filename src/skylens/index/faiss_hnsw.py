"""Graph search over an index's vectors in memory: FAISS HNSW behind LanceDB storage.

LanceDB stays the store (rows, filters, appends, versions); this module holds an HNSW graph of
the same vectors (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs", TPAMI 2018, through FAISS' ``IndexHNSWFlat``;
Douze et al., "The Faiss library", 2024). A query walks the graph from the top layer down and
compares itself with a few thousand vectors instead of the whole table: at 1M realistic
vectors it answers in about a millisecond on one core at recall@10 above 0.95, where an IVF index
must scan many cells (``bench/bench_scale_search.py``, ``bench/results/scale_search.json``).
The graph stores the float32 vectors themselves (``Flat``), so the scores returned are exact
cosine similarities of the hits found.

It answers the same calls as ``skylens.index.memory.MemoryVectors`` (a ``VectorSearcher``:
``index``, ``load``, ``fits``, ``search(queries, k)``), so the search task can pick either. Only
unfiltered vector searches take this path; filters go to LanceDB. The graph is rebuilt when the
table's version changes and, by default, saved beside the table (``hnsw-<version>.faiss``) so the
next process loads it instead of rebuilding (minutes at 1M rows on 2 cores).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skylens.errors import InputError
from skylens.index.schema import SEARCH_COLUMNS, SearchHit, hit_from_row

if TYPE_CHECKING:
    from skylens.index.store import ChipIndex

HNSW_M = 32  # graph degree: neighbours per node (memory: 2 * M * 4 bytes a row)
HNSW_EF_CONSTRUCTION = 64  # candidate list while building: recall 0.99 reachable at search time
HNSW_EF_SEARCH = 128  # candidate list per query; measured recall@10 >= 0.95 at 1M rows
DEFAULT_MAX_BYTES = 4 * 1024**3
CACHE_PREFIX = "hnsw-"


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError(
            "FAISS is not installed: pip install 'skylens[scale]' (faiss-cpu) for graph search"
        ) from None
    return faiss


@dataclass(frozen=True)
class _Snapshot:
    version: int
    graph: object  # faiss.IndexHNSWFlat over unit rows, inner product
    meta: object  # pyarrow.Table of SEARCH_COLUMNS, row i = graph id i


class HnswVectors:
    """An HNSW graph of ``index``'s vectors for fast top-k search of many queries.

    Args:
        index: the open chip index.
        max_bytes: refuse (``InputError``) to hold more than this in memory.
        m, ef_construction: graph degree and build effort.
        ef_search: candidates per query (raised to ``k`` when smaller); higher: better recall,
            slower.
        cache: save the built graph beside the table and load it when the version matches.

    Attributes:
        loads: how many times the graph was built or read.
    """

    def __init__(
        self,
        index: ChipIndex,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
        cache: bool = True,
    ) -> None:
        self.index = index
        self.max_bytes, self.m = int(max_bytes), int(m)
        self.ef_construction, self.ef_search = int(ef_construction), int(ef_search)
        self.cache = cache
        self.loads = 0
        self._snap: _Snapshot | None = None
        self._lock = threading.Lock()

    def nbytes_needed(self) -> int:
        """Bytes the graph takes: float32 rows plus ``2 * m`` int32 links a row (layer 0)."""
        return self.index.count() * (self.index.embed_dim * 4 + 2 * self.m * 4)

    def fits(self) -> bool:
        return self.nbytes_needed() <= self.max_bytes

    def load(self) -> int:
        """Build or read the graph now; returns the rows it holds."""
        return self._current().meta.num_rows

    def _current(self) -> _Snapshot:
        snap = self._snap
        if snap is not None and snap.version == self.index.version:
            return snap
        with self._lock:
            version = self.index.version
            if self._snap is None or self._snap.version != version:
                self._snap = self._load(version)
            return self._snap

    def _cache_path(self, version: int) -> Path:
        return self.index.directory / f"{CACHE_PREFIX}{version}-m{self.m}.faiss"

    def _load(self, version: int) -> _Snapshot:
        faiss = _faiss()
        need = self.nbytes_needed()
        if need > self.max_bytes:
            raise InputError(
                f"{self.index.directory}: an HNSW graph of its vectors needs "
                f"{need / 1024**2:.0f} MiB, more than the {self.max_bytes / 1024**2:.0f} MiB "
                "allowed; raise the limit or search through the LanceDB ANN index"
            )
        table = self.index.scan([*SEARCH_COLUMNS, "vector"])
        n, dim = table.num_rows, self.index.embed_dim
        path = self._cache_path(version)
        if self.cache and path.is_file():
            graph = faiss.read_index(str(path))
            if graph.ntotal != n:
                graph = None
        else:
            graph = None
        if graph is None:
            matrix = np.zeros((n, dim), np.float32)
            if n:
                flat = table.column("vector").combine_chunks().flatten().to_numpy()
                matrix = np.array(flat, dtype=np.float32).reshape(n, dim)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            np.divide(matrix, norms, out=matrix, where=norms > 0)
            graph = faiss.IndexHNSWFlat(dim, self.m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.ef_construction
            graph.add(matrix)
            if self.cache:
                self._save(graph, path)
        self.loads += 1
        return _Snapshot(version, graph, table.drop_columns(["vector"]).combine_chunks())

    def _save(self, graph, path: Path) -> None:
        """Write the graph atomically and drop graphs of older versions."""
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        try:
            faiss.write_index(graph, str(tmp))
            tmp.replace(path)
            for old in self.index.directory.glob(f"{CACHE_PREFIX}*.faiss"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError:  # a read-only index folder: search works, the next process rebuilds
            tmp.unlink(missing_ok=True)

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        """The ``k`` nearest chips to each row of ``queries`` (unit vectors), best first.

        Scores are exact cosine similarities of the hits (the graph holds float32 vectors).
        """
        faiss = _faiss()
        snap = self._current()
        n = snap.meta.num_rows
        if n == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        k = min(int(k), n)
        q = np.ascontiguousarray(queries, np.float32)
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, rows = snap.graph.search(q, k, params=params)
        wanted = np.unique(rows[rows >= 0])
        meta = dict(zip(wanted.tolist(), snap.meta.take(wanted).to_pylist(), strict=True))
        return [
            [
                hit_from_row(meta[r], s)
                for r, s in zip(rq.tolist(), sq.tolist(), strict=True)
                if r >= 0
            ]
            for rq, sq in zip(rows, scores, strict=True)
        ]
