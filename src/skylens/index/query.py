"""Queries against the chip table: a vector search (exact or through the ANN index) and a hybrid
search fusing it with a full-text (BM25) match of captions by reciprocal rank (Cormack et al.,
"Reciprocal rank fusion outperforms Condorcet and individual rank learning methods", SIGIR 2009).

Both are LanceDB's own features and run offline: Lance's native inverted index
(``lancedb.index.FTS``, no tantivy) and ``lancedb.rerankers.RRFReranker``. What to search (filters,
ANN effort, which searcher) is decided by the caller: ``ChipIndex.search`` and, above it, the one
search task ``skylens.tasks.search``.
"""

from __future__ import annotations

import numpy as np

from skylens.index.ann import with_search_effort
from skylens.index.schema import SEARCH_COLUMNS, SearchHit, hit_from_row

HYBRID_CANDIDATES = 4  # each side of a hybrid query returns k * this before fusion
RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)


def vector_query(
    table,
    v: np.ndarray,
    k: int,
    where: str | None,
    *,
    exact: bool | None,
    ann: dict | None,
    nprobes: int | None = None,
    refine_factor: int | None = None,
) -> list[SearchHit]:
    """The ``k`` rows nearest to unit vector ``v`` by cosine, best first.

    Args:
        table: the LanceDB table.
        where: SQL filter (``filters.where_clause``), applied before the search.
        exact: brute force, ignoring any ANN index.
        ann: the ANN search effort recorded at build (``ann.ann_params``); None without index.
        nprobes, refine_factor: override the recorded effort.
    """
    q = table.search(v, vector_column_name="vector").distance_type("cosine").limit(k)
    if where:
        q = q.where(where, prefilter=True)
    if exact:
        q = q.bypass_vector_index()
    elif ann:  # no effect without an index
        q = with_search_effort(q, ann, nprobes, refine_factor)
    rows = q.select([*SEARCH_COLUMNS, "_distance"]).to_arrow().to_pylist()
    return [hit_from_row(r, 1.0 - r["_distance"]) for r in rows]


def hybrid_query(
    table,
    v: np.ndarray,
    text: str,
    k: int,
    where: str | None,
    *,
    exact: bool | None,
    ann: dict | None,
    nprobes: int | None = None,
    refine_factor: int | None = None,
) -> list[SearchHit]:
    """Vector hits and caption (BM25) hits of ``text``, fused by reciprocal rank.

    ``score`` stays the exact cosine similarity; ``caption_score`` (BM25, None when the caption
    did not match) and ``fused_score`` (the RRF score that orders the hits) say how it matched.
    The caption column must have its full-text index (``ChipIndex.build_caption_index``).
    """
    from lancedb.rerankers import RRFReranker

    q = (
        table.search(query_type="hybrid", vector_column_name="vector", fts_columns="caption")
        .vector(v)
        .text(text)
        .distance_type("cosine")
        .limit(k * HYBRID_CANDIDATES)
    )
    if where:
        q = q.where(where, prefilter=True)
    if exact:
        q = q.bypass_vector_index()
    elif ann:
        q = with_search_effort(q, ann, nprobes, refine_factor)
    q = q.rerank(RRFReranker(K=RRF_K, return_score="all"))
    rows = q.select([*SEARCH_COLUMNS, "vector"]).to_arrow().to_pylist()
    hits = []
    for r in rows[:k]:
        vec = np.asarray(r["vector"], np.float32)
        cos = float(vec @ v / max(float(np.linalg.norm(vec)), 1e-12))
        bm25 = r.get("_score")
        hits.append(
            hit_from_row(
                r,
                cos,
                caption_score=None if bm25 is None else round(float(bm25), 6),
                fused_score=round(float(r["_relevance_score"]), 6),
            )
        )
    return hits
