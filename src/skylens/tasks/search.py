"""Search an index by text, by example image, or by vector: the one search path of skylens.

``search_index`` is the only function that searches: the CLI (``skylens search``), the
service's micro-batched ``/api/search`` and the Python API (``search_text``, ``search_image``,
``search_texts``) all end there, so they return the same hits for the same query. It decides, in
one place (``plan_search``):

- **exact or approximate.** An index of up to ``EXACT_MAX_ROWS`` chips is always searched
  exactly (cosine similarity against every vector that passes the filters); only a larger one
  uses its ANN index (LanceDB IVF, the ``nprobes``/``refine_factor`` recorded by ``build_ann``,
  candidates re-scored on the exact vectors). Exactness must not depend on who asks: on 200,000
  vectors with the ANN built, the CLI (ANN) and the service (exact, in memory) agreed on only
  54.5 % of top-10 lists before this rule.
- **where the vectors are scored.** Unfiltered exact searches go to the vectors held in memory
  when the caller holds them (``hold_vectors``: the service; one matrix product a batch,
  ``skylens.index.memory``), else to LanceDB's flat scan. Both are exact, so the route changes
  the speed, never the answer. Filters (bbox, time, source) and caption matches always go to
  LanceDB, which evaluates them.

With ``caption_text`` the search is hybrid: the words also match the chips' stored captions
(BM25 over LanceDB's full-text index, fused with the vector ranking by reciprocal rank; see
``skylens.index.store``).
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from skylens.errors import InputError
from skylens.index.repair import DamagedIndexError
from skylens.index.store import MAX_K, ChipIndex, SearchHit, hits_to_geojson
from skylens.models.base import ImageTextEncoder, load

log = logging.getLogger(__name__)

# calibrated match probability a hit needs to count as a good match (the default model's
# text_match_threshold; models that calibrate may set their own)
MATCH_THRESHOLD = 0.5

MAX_QUERY_CHARS = 1000
# Up to this many chips every search is exact. A flat scan of 500,000 x 768 float32 vectors is
# ~1.5 GB read per query by LanceDB (a CLI call) or one matrix product a batch in memory (the
# service); beyond it the ANN index is what makes search affordable, and then every caller
# uses it with the same parameters.
EXACT_MAX_ROWS = 500_000
# acquisition times are stored as naive UTC; time bounds are clamped to these years, which hold
# every real acquisition and which the SQL filter prints as four-digit years
_TIME_MIN = datetime(1000, 1, 1)
_TIME_MAX = datetime(9000, 1, 1)

Bbox = tuple[float, float, float, float]
TimeRange = tuple[datetime | None, datetime | None]


@dataclass
class SearchResult:
    query: str
    model: str
    hits: list[SearchHit] = field(default_factory=list)
    match_threshold: float = MATCH_THRESHOLD

    @property
    def good_match(self) -> bool | None:
        """Whether any hit is a good match by its calibrated probability (None: the model does
        not calibrate its scores, so only the ranking is known)."""
        probs = [h.match for h in self.hits if h.match is not None]
        return any(p >= self.match_threshold for p in probs) if probs else None

    @property
    def note(self) -> str | None:
        if self.good_match is False:
            return (
                f"nothing in the index is a good match for '{self.query}': every hit's calibrated "
                f"match probability is below {self.match_threshold:g}"
            )
        return None

    def _summary(self) -> dict:
        return {
            "query": self.query,
            "model": self.model,
            "good_match": self.good_match,
            "note": self.note,
        }

    def to_dict(self) -> dict:
        return self._summary() | {"hits": [h.to_dict() for h in self.hits]}

    def to_geojson(self) -> dict:
        fc = hits_to_geojson(self.hits)
        fc["properties"] = self._summary()
        return fc


@dataclass(frozen=True)
class SearchFilters:
    """Which chips a search may return (hashable: queries with equal filters batch together).

    Attributes:
        bbox: (W, S, E, N) degrees, EPSG:4326; chips whose footprint intersects it.
        time_range: (after, before) as naive UTC, inclusive; either may be None.
        source: path prefix or glob of the source files.
    """

    bbox: Bbox | None = None
    time_range: TimeRange | None = None
    source: str | None = None

    @classmethod
    def parse(
        cls,
        bbox: str | None = None,
        after: str | None = None,
        before: str | None = None,
        source: str | None = None,
    ) -> SearchFilters:
        """Filters from their text forms (CLI options, query parameters); ``InputError`` on
        anything malformed."""
        return cls(parse_bbox(bbox), parse_time_range(after, before), source or None)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.bbox, self.time_range, self.source))


@dataclass(frozen=True)
class SearchPlan:
    """How ``search_index`` answers a query (``plan_search``).

    Attributes:
        route: ``memory`` (vectors held by the caller) or ``lancedb``.
        exact: every candidate scored exactly; False: the ANN index with ``nprobes`` cells
            searched and ``k * refine_factor`` candidates re-scored exactly.
    """

    route: Literal["memory", "lancedb"]
    exact: bool
    nprobes: int | None = None
    refine_factor: int | None = None


def parse_bbox(text: str | None) -> Bbox | None:
    """``'W,S,E,N'`` in degrees (EPSG:4326) -> tuple; ``InputError`` on anything else."""
    if not text:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"bbox must be W,S,E,N in degrees, got '{text[:200]}'") from None
    if not all(map(math.isfinite, (w, s, e, n))):
        raise InputError(f"bbox must be finite numbers, got '{text[:200]}'")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InputError(f"bbox '{text[:200]}' is outside lon -180..180 / lat -90..90 or has S > N")
    return (w, s, e, n)


def _utc_bound(name: str, text: str) -> datetime:
    """An ISO 8601 time as naive UTC, clamped to the years ``_TIME_MIN``..``_TIME_MAX`` (every
    stored time lies inside them, so clamping changes no answer)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{name} must be an ISO date like 2016-04-01, got '{text[:100]}'"
        ) from None
    if t.tzinfo is not None:
        try:
            t = t.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01+01:00 or 9999-12-31-14:00: before/after all time
            t = _TIME_MIN if t.year < 5000 else _TIME_MAX
    return min(max(t, _TIME_MIN), _TIME_MAX)


def parse_time_range(after: str | None, before: str | None) -> TimeRange | None:
    """ISO 8601 ``after``/``before`` (either may be empty) -> naive-UTC time range, or None.

    Extreme dates mean what they say: ``after=0001-01-01T00:00:00+01:00`` excludes nothing,
    ``before=0001-01-01`` excludes everything.

    Raises:
        InputError: malformed dates, or ``after`` later than ``before``.
    """
    a = _utc_bound("after", after) if after else None
    b = _utc_bound("before", before) if before else None
    if a is not None and b is not None and a > b:
        raise InputError(f"time range: after ({after[:40]}) is later than before ({before[:40]})")
    return (a, b) if a is not None or b is not None else None


def check_query_text(text: str | None) -> str:
    """The stripped query; ``InputError`` when empty or too long."""
    text = (text or "").strip()
    if not text:
        raise InputError(
            "empty search text: say what to look for, e.g. 'airplanes parked at an airport'"
        )
    if len(text) > MAX_QUERY_CHARS:
        raise InputError(f"search text is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    return text


def check_k(k: int) -> int:
    """``k`` as an int in 1..``MAX_K``; ``InputError`` otherwise (0, negative, too many)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise InputError(f"the number of hits must be between 1 and {MAX_K}, got {k}")
    return int(k)


# one damaged-index error: the store raises it with the specific cause, ``reading`` for the rest
IndexDamagedError = DamagedIndexError

_PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EACCES, errno.ELOOP)


@contextmanager
def reading(index: ChipIndex | Path | str) -> Iterator[None]:
    """Turn a storage failure inside the block into ``IndexDamagedError`` naming the index
    folder (by its name: the message may reach an HTTP client); the details go to the log."""
    try:
        yield
    except DamagedIndexError:
        raise  # the store already named the index and the cause
    except (RuntimeError, OSError) as exc:
        if not isinstance(exc, OSError) and "lance" not in str(exc).lower():
            raise  # not storage: a bug, reported as one
        folder = Path(index.directory if isinstance(index, ChipIndex) else index)
        if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS:  # the name, not the files
            raise InputError(f"index '{folder.name}': {exc.strerror}") from None
        log.warning("index %s cannot be read: %s", folder, exc)
        raise IndexDamagedError(
            f"index '{folder.name}' cannot be read: a data file is missing or damaged "
            f"({type(exc).__name__}). Rebuild it with `skylens index`, or restore its files"
        ) from None


def open_index(directory: str | Path, *, check: bool = False) -> ChipIndex:
    """Open an index for searching (``ChipIndex.open``): how faces reach storage.

    Args:
        check: read every row's path once (the table's every data file), so a damaged index
            fails here, at start-up, rather than on a later search (~0.4 s at 1M rows).

    Raises:
        NotFoundError: no index there; IndexMismatchError: a newer schema;
        IndexDamagedError: its files cannot be read.
    """
    with reading(directory):
        index = ChipIndex.open(directory)
        if check:
            index.stats()
    return index


def describe_index(index: ChipIndex) -> dict:
    """``ChipIndex.stats`` (rows, sources, model, ANN state, bytes), storage failures as
    ``IndexDamagedError``."""
    with reading(index):
        return index.stats()


def hold_vectors(index: ChipIndex, max_bytes: int):
    """The index's vectors held in memory for batched exact search (``MemoryVectors``), or
    None when ``max_bytes`` is 0. They load on first use (or ``.load()``)."""
    from skylens.index.memory import MemoryVectors

    return MemoryVectors(index, max_bytes=max_bytes) if max_bytes > 0 else None


def plan_search(
    index: ChipIndex, filters: SearchFilters | None = None, *, caption_text=None, memory=None
) -> SearchPlan:
    """How a search of ``index`` is answered (see the module docstring): the one place that
    chooses exact or ANN, memory or LanceDB, and the ANN parameters."""
    # vectors already held answer the row count for free: counting the table costs ~1 ms a
    # call, on every micro-batch of the service (bench/load.py)
    held = getattr(memory, "rows", None) if memory is not None else None
    rows = held if held is not None else index.count()
    exact = rows <= EXACT_MAX_ROWS or not index.has_ann()
    if exact:
        usable = (
            memory is not None
            and getattr(memory, "exact", True)  # an approximate searcher (a graph) never answers
            and not filters  # for an exact search: the CLI could not reproduce it
            and not caption_text
            and (held is not None or memory.fits())
        )
        return SearchPlan("memory" if usable else "lancedb", True)
    ann = index.meta.get("ann") or index.ann_params(rows)
    return SearchPlan("lancedb", False, int(ann["nprobes"]), int(ann.get("refine_factor") or 1))


def _unit_rows(index: ChipIndex, queries: np.ndarray, model_version: str | None) -> np.ndarray:
    if model_version is not None and model_version != index.model_version:
        index.check_model("query model", model_version)
    q = np.asarray(queries, np.float32)
    q = q.reshape(1, -1) if q.ndim <= 1 else q
    if q.ndim != 2 or q.shape[1] != index.embed_dim:
        raise InputError(
            f"query vector has {q.shape[-1]} dimensions; the index holds {index.embed_dim}-d "
            f"vectors of model '{index.model_name}'"
        )
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise InputError("query vector is all zeros or not finite")
    return q / norms


def search_index(
    index: ChipIndex,
    queries: np.ndarray,
    *,
    model_version: str | None,
    k: int = 10,
    filters: SearchFilters | None = None,
    caption_text: str | None = None,
    memory=None,
) -> list[list[SearchHit]]:
    """The ``k`` chips nearest to each query vector, best first: THE search of skylens.

    Args:
        index: the open index.
        queries: (N, D) or (D,) query embeddings (normalised here).
        model_version: version of the model that embedded them (refused when not the index's).
        k: hits per query, 1..``MAX_K``.
        filters: bbox / time / source restrictions.
        caption_text: also match these words against stored captions (hybrid; one query).
        memory: the index's vectors held in memory (``hold_vectors``), if the caller keeps them.

    Returns:
        One list of hits per query row; scores are cosine similarities in [-1, 1].

    Raises:
        InputError: bad k, vector size or filters; IndexMismatchError: another model's query.
    """
    k = check_k(k)
    rows = _unit_rows(index, queries, model_version)
    filters = filters or SearchFilters()
    with reading(index):
        return _answer(index, rows, k, filters, caption_text, memory)


def _answer(index, rows, k, filters, caption_text, memory) -> list[list[SearchHit]]:
    plan = plan_search(index, filters, caption_text=caption_text, memory=memory)
    if plan.route == "memory":
        return memory.search(rows, k)
    return [
        index.search(
            row,
            k=k,
            bbox=filters.bbox,
            time_range=filters.time_range,
            source=filters.source,
            exact=plan.exact,
            nprobes=plan.nprobes,
            refine_factor=plan.refine_factor,
            text=caption_text,
        )
        for row in rows
    ]


def _encoder_for(index: ChipIndex, model: ImageTextEncoder | str | None) -> ImageTextEncoder:
    enc = (
        load(index.model_name)
        if model is None
        else (load(model) if isinstance(model, str) else model)
    )
    enc.require(ImageTextEncoder)
    return enc


def _filters(filters, bbox, time_range, source) -> SearchFilters:
    if filters is not None:
        return filters
    return SearchFilters(bbox, time_range, source or None)


def search_texts(
    index: ChipIndex,
    texts: Sequence[str],
    *,
    model: ImageTextEncoder | str | None = None,
    k: int = 10,
    filters: SearchFilters | None = None,
    memory=None,
) -> list[SearchResult]:
    """Several text queries in one call: one encoder pass, one ``search_index`` (``--queries``)."""
    k = check_k(k)
    checked = [check_query_text(t) for t in texts]
    enc = _encoder_for(index, model)
    if not checked:
        return []
    unique = list(dict.fromkeys(checked))
    vectors = enc.encode_texts(unique)
    hits = search_index(
        index, vectors, model_version=enc.version, k=k, filters=filters, memory=memory
    )
    by_text = dict(zip(unique, with_match(enc, vectors, hits), strict=True))
    threshold = _match_threshold(enc)
    return [SearchResult(t, enc.name, by_text[t], threshold) for t in checked]


TextQuery = tuple[str, int, SearchFilters]


def with_match(
    enc: ImageTextEncoder, vectors: np.ndarray, hit_lists: list[list[SearchHit]]
) -> list[list[SearchHit]]:
    """The hits with ``match`` set: the model's calibrated probability that each chip matches
    its text query (``calibrate_scores``; a gibberish query scores low everywhere). Hits of
    models that do not calibrate are returned as they are."""
    calibrate = getattr(enc, "calibrate_scores", None)
    if calibrate is None:
        return hit_lists
    out = []
    for vector, hits in zip(vectors, hit_lists, strict=True):
        if not hits:
            out.append(hits)
            continue
        cos = np.array([[h.score for h in hits]], np.float32)
        probs = np.asarray(calibrate(vector[None], cos)).reshape(-1)
        out.append([replace(h, match=round(float(p), 4)) for h, p in zip(hits, probs, strict=True)])
    return out


def search_text_batch(
    index: ChipIndex, queries: Sequence[TextQuery], *, model: ImageTextEncoder, memory=None
) -> list[list[SearchHit]]:
    """Hits for many ``(text, k, filters)`` queries at once (the service's micro-batches): one
    encoder call for the distinct texts, one ``search_index`` call per distinct filter set.

    Texts must be checked already (``check_query_text``). Returns one hit list per query.
    """
    enc = _encoder_for(index, model)
    texts = list(dict.fromkeys(text for text, _, _ in queries))
    if not texts:
        return []
    vectors = enc.encode_texts(texts)
    row = {text: i for i, text in enumerate(texts)}
    answers: dict[TextQuery, list[SearchHit]] = {}
    for filters in dict.fromkeys(f for _, _, f in queries):
        group = [q for q in queries if q[2] == filters]
        group_texts = list(dict.fromkeys(t for t, _, _ in group))
        hits = search_index(
            index,
            vectors[[row[t] for t in group_texts]],
            model_version=enc.version,
            k=max(k for _, k, _ in group),
            filters=filters,
            memory=memory,
        )
        hits = with_match(enc, vectors[[row[t] for t in group_texts]], hits)
        by_text = dict(zip(group_texts, hits, strict=True))
        answers.update({q: by_text[q[0]][: q[1]] for q in group})
    return [answers[q] for q in queries]


def search_text(
    index: ChipIndex,
    text: str,
    *,
    model: ImageTextEncoder | str | None = None,
    k: int = 10,
    filters: SearchFilters | None = None,
    bbox: Bbox | None = None,
    time_range: TimeRange | None = None,
    source: str | None = None,
    match_captions: bool = False,
) -> SearchResult:
    """Chips that best match ``text``; the model defaults to the one the index was built with.

    Args:
        filters: the filters as one object, or give ``bbox``/``time_range``/``source``.
        match_captions: also match ``text`` against stored captions (hybrid search; the index
            must hold captions, ``skylens index --caption``).
    """
    k = check_k(k)
    text = check_query_text(text)
    enc = _encoder_for(index, model)
    vectors = enc.encode_texts([text])
    [hits] = search_index(
        index,
        vectors,
        model_version=enc.version,
        k=k,
        filters=_filters(filters, bbox, time_range, source),
        caption_text=text if match_captions else None,
    )
    [hits] = with_match(enc, vectors, [hits])
    return SearchResult(text, enc.name, hits, _match_threshold(enc))


def _match_threshold(enc: ImageTextEncoder) -> float:
    return float(getattr(enc, "text_match_threshold", MATCH_THRESHOLD))


def search_image(
    index: ChipIndex,
    image: str | Path | np.ndarray,
    *,
    model: ImageTextEncoder | str | None = None,
    k: int = 10,
    bands: str | None = None,
    filters: SearchFilters | None = None,
    bbox: Bbox | None = None,
    time_range: TimeRange | None = None,
    source: str | None = None,
    label: str | None = None,
) -> SearchResult:
    """Chips most similar to an example image (a file or an RGB uint8 array).

    Args:
        label: how the query is named in the result (default: the path, or ``<array>``).
    """
    k = check_k(k)
    enc = _encoder_for(index, model)
    if isinstance(image, np.ndarray):
        rgb, shown = image, "<array>"
    else:
        from skylens.tasks.common import load_scene_rgb  # rasterio: only image queries pay it

        shown = str(image)
        rgb = load_scene_rgb(image, bands=bands)
    [hits] = search_index(
        index,
        enc.encode_images([rgb]),
        model_version=enc.version,
        k=k,
        filters=_filters(filters, bbox, time_range, source),
    )
    return SearchResult(f"image:{label or shown}", enc.name, hits)
