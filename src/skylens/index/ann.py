"""ANN index maintenance: default IVF parameters for a table size, LanceDB index configs, and the
search effort (``nprobes``, ``refine_factor``) recorded at build time so every reader searches the
same way.

An inverted-file index (IVF) groups vectors by k-means cell and a query scans the nearest cells
(Jegou et al., "Product quantization for nearest neighbor search", TPAMI 2011); here over 8-bit
scalar-quantised vectors by default, re-scored with the exact vectors (``refine_factor``), so the
scores a search returns are exact cosine similarities either way.
"""

from __future__ import annotations

import math

from skylens.errors import InputError

ANN_MIN_ROWS = 10_000  # below this, brute force is both faster than ANN and exact
# ANN defaults. bench/bench_search.py measured IVF_SQ on 1M i.i.d. Gaussian 384-d vectors (the
# worst case: every cell equally likely) and needed 85% of the cells for recall@10 0.956.
# Real embeddings cluster: bench/bench_scale_search.py on vectors grown from 8,892 real chip
# embeddings (bench/results/scale_search.json) reached recall@10 0.995 with 6 of 24 cells at 100k
# rows, 0.987 with 7 of 73 at 300k and 0.999 with 24 of 244 at 1M (p50 13 ms vs 82 ms probing
# 85%); a quarter of the cells leaves a margin for archives less clustered than those. IVF_PQ reached lower recall at
# longer build times; IVF_HNSW_SQ did not beat IVF_SQ (20k rows). For unfiltered search at
# scale the FAISS HNSW graph in memory (index/faiss_hnsw.py) is faster still.
ANN_INDEX_TYPE = "IVF_SQ"  # 8-bit scalar quantisation: 1 byte per dimension, held in memory
ANN_ROWS_PER_PARTITION = 4_096  # IVF cells = rows / this
ANN_PROBE_FRACTION = 0.25  # share of cells searched (random vectors would need most of them)
ANN_MIN_NPROBES = 4
ANN_REFINE_FACTOR = 5  # re-score k * this candidates with the exact vectors
ANN_DIMS_PER_SUB_VECTOR = 8  # IVF_PQ only: one byte per 8 dimensions


def largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of ``n`` not above ``cap`` (IVF_PQ sub-vectors must divide the dims)."""
    for d in range(max(1, min(n, cap)), 0, -1):
        if n % d == 0:
            return d
    return 1


def default_nprobes(partitions: int) -> int:
    """Cells probed per query by default for an index of ``partitions`` cells."""
    return min(partitions, max(ANN_MIN_NPROBES, math.ceil(partitions * ANN_PROBE_FRACTION)))


def ann_params(
    num_rows: int,
    embed_dim: int,
    index_type: str | None = None,
    *,
    num_partitions: int | None = None,
    num_sub_vectors: int | None = None,
    nprobes: int | None = None,
    refine_factor: int | None = None,
) -> dict:
    """ANN parameters for ``num_rows`` rows of ``embed_dim`` dimensions: the defaults, with
    the arguments given overriding them (see ``ChipIndex.build_ann``).

    Raises:
        InputError: ``num_sub_vectors`` does not divide ``embed_dim``.
    """
    partitions = int(num_partitions or max(1, round(int(num_rows) / ANN_ROWS_PER_PARTITION)))
    params = {
        "index_type": (index_type or ANN_INDEX_TYPE).upper(),
        "num_partitions": partitions,
        "nprobes": default_nprobes(partitions),
        "refine_factor": ANN_REFINE_FACTOR,
    }
    if params["index_type"] in ("IVF_PQ", "IVF_HNSW_PQ"):
        params["num_sub_vectors"] = largest_divisor_at_most(
            embed_dim, max(1, embed_dim // ANN_DIMS_PER_SUB_VECTOR)
        )
    if num_sub_vectors:
        if embed_dim % int(num_sub_vectors):
            raise InputError(
                f"num_sub_vectors {num_sub_vectors} must divide the {embed_dim} dimensions"
            )
        params["num_sub_vectors"] = int(num_sub_vectors)
    if nprobes:
        params["nprobes"] = int(nprobes)
    if refine_factor:
        params["refine_factor"] = int(refine_factor)
    return params


def ann_config(params: dict):
    """The lancedb index config for ``params`` (``ann_params``)."""
    from lancedb.index import HnswSq, IvfPq, IvfRq, IvfSq

    kind, parts = params["index_type"], params["num_partitions"]
    if kind == "IVF_PQ":
        return IvfPq(
            distance_type="cosine",
            num_partitions=parts,
            num_sub_vectors=params.get("num_sub_vectors"),
        )
    if kind == "IVF_SQ":
        return IvfSq(distance_type="cosine", num_partitions=parts)
    if kind == "IVF_RQ":
        return IvfRq(distance_type="cosine", num_partitions=parts)
    if kind == "IVF_HNSW_SQ":
        return HnswSq(distance_type="cosine", num_partitions=parts)
    raise InputError(f"unknown ANN index type '{kind}': use IVF_PQ, IVF_SQ, IVF_RQ or IVF_HNSW_SQ")


def with_search_effort(query, ann: dict, nprobes: int | None, refine_factor: int | None):
    """``query`` with the ANN effort asked, else the one recorded at build (``ann``)."""
    query = query.nprobes(int(nprobes or ann["nprobes"]))
    return query.refine_factor(int(refine_factor or ann.get("refine_factor", ANN_REFINE_FACTOR)))
