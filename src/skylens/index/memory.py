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

A coarse pass finds candidates and float32 re-scores them: the product reads the whole matrix,
so an int8 copy (a quarter of the bytes, VNNI instructions) or a bfloat16 one picks the
``max(4k, k + 64)`` best rows per query, whichever is fastest on this CPU (timed at load), and
their exact scores order the answer — the scalar quantisation + re-ranking of FAISS'
``IndexScalarQuantizer`` with a refine step.

Only unfiltered vector searches take this path; filters (bbox, time, source) and caption matches
go to LanceDB, which evaluates them. The vectors and the metadata hits carry are read together
in one scan, so a search answers from one consistent snapshot and reads nothing from disk; the
snapshot is reloaded when the table's version changes (another process added chips, or
``compact`` rewrote the files).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from skylens.errors import InputError

if TYPE_CHECKING:
    from skylens.index.store import ChipIndex, SearchHit

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: ~460,000 chips of 768-d float32 + a coarse copy
COARSE_MIN_ROWS = 4096  # below this a float32 product is fast enough: no coarse copy
_QUANT_CHUNK = 65536  # rows quantised at a time (bounds the temporary float32 copy)
_SHARD_VALUES = 1 << 30  # int8 values per onnxruntime session (an ONNX model stays < 2 GiB)

log = logging.getLogger(__name__)


class _Bf16Coarse:
    """The matrix in bfloat16: half the bytes, AVX512-BF16/AMX products where the CPU has them."""

    kind = "bf16"

    def __init__(self, matrix) -> None:
        import torch

        self.data = matrix.to(torch.bfloat16)

    def top(self, q, c: int):
        """The ``c`` best rows for each query in ``q`` (unit rows): (values, rows), each (B, c)."""
        import torch

        return torch.topk(q.to(torch.bfloat16) @ self.data.T, c, dim=1)


class _Int8Coarse:
    """The matrix in int8, one scale per dimension, multiplied by onnxruntime's
    ``MatMulInteger`` (a quarter of the bytes; VNNI/AMX int8 kernels, the matrix packed once).

    Rows are ``round(row / scale)``; a query is multiplied by ``scale`` and quantised to int8
    with its own scale, so its integer products rank the rows as the float32 ones do, to the
    quantisation error. The graph ends in a ``TopK``, so only candidates leave onnxruntime. The
    matrix is split into sessions of at most ``_SHARD_VALUES`` values (an ONNX model holds
    under 2 GiB); their candidates are merged.
    """

    kind = "int8"

    def __init__(self, matrix) -> None:
        import torch

        from skylens.models.towers import default_threads, ort_session

        n, dim = matrix.shape
        scale = matrix.abs().amax(dim=0) / 127.0  # 0 for an unused dimension: queries drop it
        divisor = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.scale = scale
        threads = default_threads()
        rows = max(1, _SHARD_VALUES // dim)
        self._sessions: list[tuple[int, int, object]] = []  # (first row, rows, session)
        for start in range(0, n, rows):
            block = np.empty((dim, min(rows, n - start)), np.int8)  # (D, n): B of A @ B
            for s in range(0, block.shape[1], _QUANT_CHUNK):
                part = matrix[start + s : start + min(s + _QUANT_CHUNK, block.shape[1])]
                block[:, s : s + len(part)] = torch.round(part / divisor).clamp(-127, 127).T
            model = _matmul_integer_model(block).SerializeToString()
            del block
            self._sessions.append((start, min(rows, n - start), ort_session(model, threads)))

    def quantise(self, q) -> np.ndarray:
        """Queries as uint8 with zero point 128 (``MatMulInteger``'s fast left-hand type)."""
        import torch

        x = q * self.scale  # the per-dimension scale moves onto the query
        peak = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        return (torch.round(x * (127.0 / peak)) + 128).to(torch.uint8).numpy()

    def top(self, q, c: int):
        """The ``c`` best rows for each query in ``q`` (unit rows): (int32 products, rows)."""
        import torch

        a = self.quantise(q)
        values, rows = [], []
        for start, n, session in self._sessions:
            v, i = session.run(["V", "I"], {"A": a, "K": np.array([min(c, n)], np.int64)})
            values.append(torch.from_numpy(v))
            rows.append(torch.from_numpy(i) + start)
        if len(values) == 1:
            return values[0], rows[0]
        v, pos = torch.topk(torch.cat(values, dim=1), c, dim=1)
        return v, torch.gather(torch.cat(rows, dim=1), 1, pos)


def _matmul_integer_model(block: np.ndarray):
    """ONNX model: the top ``K`` of ``(A - 128) @ block`` per row of A, as values ``V`` (int32)
    and column indices ``I``; A (batch, D) uint8, block (D, n) int8."""
    from onnx import TensorProto, helper, numpy_helper

    dim, n = block.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMulInteger", ["A", "B", "zero"], ["Y"]),
            helper.make_node("TopK", ["Y", "K"], ["V", "I"], axis=1),
        ],
        "coarse_candidates",
        [
            helper.make_tensor_value_info("A", TensorProto.UINT8, ["batch", dim]),
            helper.make_tensor_value_info("K", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("V", TensorProto.INT32, ["batch", "k"]),
            helper.make_tensor_value_info("I", TensorProto.INT64, ["batch", "k"]),
        ],
        [
            numpy_helper.from_array(block, "B"),
            numpy_helper.from_array(np.array(128, np.uint8), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@dataclass(frozen=True)
class _Snapshot:
    version: int
    matrix: object  # torch.Tensor (N, D) float32, rows of unit length (zero rows stay zero)
    coarse: (
        _Bf16Coarse | _Int8Coarse | None
    )  # when a low-precision product is faster here, else None
    meta: object  # pyarrow.Table of SEARCH_COLUMNS, row i = matrix row i


class MemoryVectors:
    """The vectors of ``index`` in memory, for exact top-k search of many queries at once.

    The metadata that hits carry (path, window, footprint, ...) is held with them, so a search
    reads nothing from disk and answers from one consistent snapshot of the table.

    Args:
        index: the open chip index.
        max_bytes: refuse (``InputError``) to hold more than this many bytes of vectors.
        coarse: allow a low-precision copy (int8 or bfloat16, whichever multiplies fastest
            here) to pick candidates that are then re-scored in float32.

    Attributes:
        loads: how many times the vectors were (re)loaded from disk.
    """

    def __init__(
        self, index: ChipIndex, *, max_bytes: int = DEFAULT_MAX_BYTES, coarse: bool = True
    ) -> None:
        self.index = index
        self.max_bytes = int(max_bytes)
        self.use_coarse = coarse
        self.loads = 0
        self._snap: _Snapshot | None = None
        self._lock = threading.Lock()

    @property
    def coarse_kind(self) -> str | None:
        """ "int8", "bf16" or None (float32 only) in the loaded snapshot; None before loading."""
        snap = self._snap
        return snap.coarse.kind if snap is not None and snap.coarse is not None else None

    @property
    def rows(self) -> int | None:
        """Rows of the snapshot held now, None before the first load. Free to ask (no table
        access), so a search plan can read it on every batch; the snapshot follows the table
        at the next search."""
        snap = self._snap
        return None if snap is None else int(snap.meta.num_rows)

    def nbytes_needed(self) -> int:
        """Bytes the index's vectors may take in memory: float32, plus at most a bfloat16 copy
        (an int8 copy takes half that)."""
        rows = self.index.count()
        per_value = 6 if self.use_coarse and rows >= COARSE_MIN_ROWS else 4
        return rows * self.index.embed_dim * per_value

    def fits(self) -> bool:
        return self.nbytes_needed() <= self.max_bytes

    def load(self) -> int:
        """Load the vectors now (they load on the first search otherwise); returns the rows held.

        Raises:
            InputError: they need more than ``max_bytes``.
        """
        return self._current().meta.num_rows

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

        from skylens.index.store import SEARCH_COLUMNS

        need = self.nbytes_needed()
        if need > self.max_bytes:
            raise InputError(
                f"{self.index.directory}: its vectors need {need / 1024**2:.0f} MiB, more than "
                f"the {self.max_bytes / 1024**2:.0f} MiB allowed in memory; raise the limit or "
                "search through the ANN index"
            )
        table = (  # one read: the vectors and their metadata come from the same version
            self.index._table.search().select([*SEARCH_COLUMNS, "vector"]).limit(None).to_arrow()
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
            coarse=_fastest_coarse(exact) if self.use_coarse else None,
            meta=table.drop_columns(["vector"]).combine_chunks(),
        )

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        """The ``k`` nearest chips to each row of ``queries`` (unit vectors), best first.

        Scores are exact cosine similarities, as ``ChipIndex.search`` gives them.
        """
        import torch

        from skylens.index.store import _hit_from_row

        snap = self._current()
        n = snap.meta.num_rows
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
        meta = dict(zip(wanted.tolist(), snap.meta.take(wanted).to_pylist(), strict=True))
        return [
            [_hit_from_row(meta[row], s) for row, s in zip(rows_q.tolist(), scores_q, strict=True)]
            for rows_q, scores_q in zip(top_rows, top_scores, strict=True)
        ]


def _candidates(k: int, n: int) -> int:
    """Coarse candidates to re-score exactly for ``k`` hits (low precision reorders near-ties;
    a wide margin keeps every true top-k hit among the candidates)."""
    return min(n, max(4 * k, k + 64))


def _coarse_then_exact(q, coarse: _Bf16Coarse | _Int8Coarse, exact, k: int):
    """Top ``k`` by exact float32 scores among the best coarse candidates of each query."""
    import torch

    c = _candidates(k, exact.shape[0])
    _, cand = coarse.top(q, c)  # (B, c)
    rescored = torch.einsum("bd,bcd->bc", q, exact[cand])  # exact scores of the candidates
    top_scores, pos = torch.topk(rescored, k, dim=1)
    return top_scores, torch.gather(cand, 1, pos)


def _fastest_coarse(matrix) -> _Bf16Coarse | _Int8Coarse | None:
    """The low-precision copy of ``matrix`` that multiplies fastest here, or None when neither
    beats float32 by 20%.

    The product reads the whole matrix for every batch: int8 (VNNI) or bfloat16 (AVX512-BF16,
    AMX) instructions shrink the bytes and raise the arithmetic rate; on CPUs without them the
    conversions may cost more than they save. Timed once on a slice at load, with a batch of
    32 queries (what the service batches under load): a few tens of milliseconds.
    """
    import time

    import torch

    if matrix.shape[0] < COARSE_MIN_ROWS:
        return None  # small: float32 is fast enough and exact
    part = matrix[:32768]
    q = torch.nn.functional.normalize(torch.ones(32, matrix.shape[1]), dim=1)
    c = _candidates(10, len(part))  # as for the default k
    kinds = {"bf16": _Bf16Coarse, "int8": _Int8Coarse}
    timings = {}
    with torch.inference_mode():
        runs = {"f32": lambda: torch.topk(q @ part.T, c, dim=1)}
        for kind, cls in kinds.items():
            try:
                copy = cls(part)
                copy.top(q, c)
            except Exception as exc:  # noqa: BLE001 - a kernel this build lacks: no candidate
                log.info("no %s candidate pass here: %s", kind, exc)
                continue
            runs[kind] = lambda copy=copy: copy.top(q, c)
        for name, run in runs.items():
            run()  # warm up
            t = time.perf_counter()
            for _ in range(3):
                run()
            timings[name] = time.perf_counter() - t
    best = min((k for k in kinds if k in timings), key=timings.__getitem__, default=None)
    if best is None or timings[best] > 0.8 * timings["f32"]:
        return None
    return kinds[best](matrix)
