"""The chip index: one LanceDB table per archive, one row per chip (``ChipIndex``).

The concerns live in their own modules and meet here: the table's layout and hits
(``schema``), search filters as SQL (``filters``), chip ids, row validation and the writers' lock
(``rows``), ANN parameters (``ann``), vector and hybrid queries (``query``) and damaged-index
errors (``repair``). ``skylens-index.json`` beside the database records the model; an index refuses
to be written or queried by another model, since vectors of two models are not comparable.

Safety. Every LanceDB write commits a new table version atomically (Lance format: data files are
written first, then a manifest names them; a crash before the manifest leaves the previous version
intact). ``add`` validates a whole batch before writing and inserts it with one ``merge_insert``
keyed on ``id``, so a batch is all-or-nothing and re-adding a chip is a no-op; writers take turns
through a lock file (two concurrent merge_inserts of one new id would both insert it). Readers
re-check the latest version before each query and old versions are kept for ``KEEP_VERSIONS``
after compaction, so a reader never sees a half-written batch or a file vanish under it. A table
whose files were lost or truncated raises ``DamagedIndexError`` naming the index and the fix.

Speed. Each ``add`` is one small fragment; every ``COMPACT_EVERY`` adds the writer merges small
fragments into ones of ``FRAGMENT_ROWS`` rows (bigger ones are never rewritten), so appends stay
cheap as the table grows. Vector search is exact (brute force) until ``build_ann`` builds an IVF
index (``ann``); ``bench/bench_scale_search.py`` compares it with FAISS at 1M rows.

Captions. Chips ingested with a captioner carry a caption; ``search(..., text=...)`` then runs a
hybrid query (``query.hybrid_query``). Rows added after the full-text index was built are
searched unindexed until ``compact`` folds them in, so a caption is findable as soon as its row
is committed.

This module never imports ``skylens.index.memory``: batched in-memory searchers reach the index
through ``schema.VectorSearcher`` and which searcher answers is decided by ``skylens.tasks.search``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from skylens.errors import IndexMismatchError, InputError, NotFoundError
from skylens.index import repair
from skylens.index.ann import (  # noqa: F401 - re-exported: the names callers knew here
    ANN_INDEX_TYPE,
    ANN_MIN_ROWS,
    ANN_REFINE_FACTOR,
    ann_config,
    ann_params,
    default_nprobes,
)
from skylens.index.filters import sql_str, where_clause
from skylens.index.query import hybrid_query, vector_query
from skylens.index.record import create_table_and_record, read_record
from skylens.index.repair import DamagedIndexError, guarded  # noqa: F401 - re-exported
from skylens.index.rows import (  # noqa: F401 - ID_CHUNK re-exported
    ID_CHUNK,
    chip_id,
    compact_table,
    existing_ids,
    rows_to_arrow,
    write_lock,
)
from skylens.index.schema import (  # noqa: F401 - re-exported for callers of the old module
    DB_DIR,
    MAX_K,
    META_FILE,
    SCHEMA_VERSION,
    SEARCH_COLUMNS,
    TABLE,
    SearchHit,
    VectorSearcher,
    chip_schema,
    hit_from_row,
    hits_to_geojson,
    lancedb_module,
    skylens_version,
    write_json_atomic,
)

_hit_from_row = hit_from_row  # the name skylens.index.memory imports
_lancedb = lancedb_module  # the name this module gave it before the split

COMPACT_EVERY = 64  # adds (one small fragment each) between automatic compactions
FRAGMENT_ROWS = 65_536  # compaction target: fragments this big are never rewritten again
KEEP_VERSIONS = timedelta(minutes=10)  # superseded versions stay readable this long


# -- the index ----------------------------------------------------------------------------------
class ChipIndex:
    """A folder holding a LanceDB table of chips and the record of the model that filled it.

    Use ``ChipIndex.create_or_open`` to write, ``ChipIndex.open`` to read.
    """

    def __init__(self, directory: Path, meta: dict) -> None:
        self._directory = Path(directory)
        self.meta = meta
        # interval 0: every query first checks for a newer version, so a reader never lags a
        # writer and never reads a version old enough for compaction to have removed its files
        self._db = lancedb_module().connect(
            str(self._directory / DB_DIR), read_consistency_interval=timedelta(0)
        )
        try:
            self._table = self._db.open_table(TABLE)
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
            if repair.is_damage(exc):
                raise repair.damaged(self._directory, exc) from None
            raise NotFoundError(
                f"{self._directory}: index record found but its table is missing or unreadable "
                f"({exc}); rebuild it with `skylens index`"
            ) from None
        with repair.guard(self._directory):
            vec = self._table.schema.field("vector").type
        if getattr(vec, "list_size", self.embed_dim) != self.embed_dim:
            raise IndexMismatchError(
                f"{self._directory}: {META_FILE} says {self.embed_dim}-d vectors but the table "
                f"holds {vec.list_size}-d ones; the index is damaged, rebuild it"
            )
        self._adds_since_compact = 0
        self._meta_mtime = self._meta_stamp()

    def _meta_stamp(self) -> int | None:
        try:
            return (self._directory / META_FILE).stat().st_mtime_ns
        except OSError:
            return None

    def _reload_meta_if_changed(self) -> None:
        """Pick up ANN settings another process recorded (``build_ann``) since we opened."""
        stamp = self._meta_stamp()
        if stamp is not None and stamp != self._meta_mtime:
            try:
                self.meta = json.loads((self._directory / META_FILE).read_text())
                self._meta_mtime = stamp
            except (OSError, ValueError):
                pass  # mid-replace: keep what we have

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create_or_open(
        cls, directory: str | Path, *, model_name: str, model_version: str, embed_dim: int
    ) -> ChipIndex:
        """Open the index at ``directory`` for this model, creating it when absent.

        Args:
            directory: index folder; created with its parents when missing.
            model_name: registry name of the embedding model (recorded, shown in errors).
            model_version: the model's weight digest; the identity that must match.
            embed_dim: embedding dimensions.

        Raises:
            IndexMismatchError: the index exists and was built with another model version or
                dimension.
            InputError: the folder exists, is not empty and is not an index.
        """
        if int(embed_dim) < 1:
            raise InputError(f"embed_dim must be positive, got {embed_dim}")
        d = Path(directory)
        if (d / META_FILE).is_file():
            index = cls.open(d)
            index.check_model(model_name, model_version, embed_dim)
            return index
        meta = create_table_and_record(
            d, model_name=model_name, model_version=model_version, embed_dim=embed_dim
        )
        return cls(d, meta)

    @classmethod
    def open(cls, directory: str | Path) -> ChipIndex:
        """Open an existing index.

        Raises:
            NotFoundError: no index at ``directory`` (the message names the path).
            IndexMismatchError: the index was written by a newer skylens (unknown schema).
        """
        d = Path(directory)
        meta = read_record(d)
        return cls(d, meta)

    @property
    def directory(self) -> Path:
        """The index folder."""
        return self._directory

    @property
    def model_name(self) -> str:
        return str(self.meta["model_name"])

    @property
    def model_version(self) -> str:
        return str(self.meta["model_version"])

    @property
    def embed_dim(self) -> int:
        return int(self.meta["embed_dim"])

    def check_model(
        self, model_name: str, model_version: str, embed_dim: int | None = None
    ) -> None:
        """Raise ``IndexMismatchError`` unless this model version (and dimension) built the index."""
        if model_version != self.model_version or (
            embed_dim is not None and int(embed_dim) != self.embed_dim
        ):
            dim = f", {embed_dim}-d" if embed_dim is not None else ""
            raise IndexMismatchError(
                f"{self._directory}: index was built with model '{self.model_name}' "
                f"(version {self.model_version}, {self.embed_dim}-d); model '{model_name}' "
                f"(version {model_version}{dim}) cannot write to or query it. Use the index's "
                "model, or re-index: `skylens index SOURCES --index NEW_FOLDER` with this one "
                "(an index made by an older skylens-lite must be re-indexed after an upgrade)."
            )

    # -- writing ------------------------------------------------------------------------------
    chip_id = staticmethod(chip_id)  # rows.chip_id: content digest + window + model version

    @guarded
    def existing_ids(self, ids: Iterable[str], *, captioned_only: bool = False) -> set[str]:
        """Which of ``ids`` are already stored (for resuming an ingest).

        Args:
            ids: chip ids.
            captioned_only: count only rows that have a caption (an ingest with a captioner
                redoes the others to fill their captions, ``add(fill_captions=True)``).
        """
        return existing_ids(self._table, ids, captioned_only=captioned_only)

    @guarded
    def add(self, rows: Sequence[dict], *, fill_captions: bool = False) -> int:
        """Insert rows whose id is not stored yet; returns how many were inserted.

        With ``fill_captions``, a row whose id is stored *without* a caption replaces it (same
        chip, same model version, so the same vector; now with its caption); stored rows that
        have a caption are never touched.

        A row is a dict with ``vector`` (``embed_dim`` floats, L2-normalised), ``path``,
        ``window`` (4 ints) and optionally ``id`` (default ``chip_id(source_digest, window,
        model_version)``), ``bounds``, ``crs``, ``footprint`` (GeoJSON geometry, dict or text),
        ``acquired`` (datetime; aware ones are converted to UTC), ``bands``, ``source_digest``,
        ``caption``, ``model_name``, ``model_version``. Unknown keys are ignored.

        The whole batch is validated before anything is written and inserted in one commit, so
        a bad or interrupted batch never half-writes and never touches rows already stored.

        Raises:
            InputError: a row is malformed (names the row's path and window).
            IndexMismatchError: a row's ``model_version`` is not the index's.
        """
        if not rows:
            return 0
        data = rows_to_arrow(self, rows, self._table.schema)
        with write_lock(self._directory):
            self._table.checkout_latest()  # see what another writer committed a moment ago
            merge = self._table.merge_insert("id")
            if fill_captions:
                merge = merge.when_matched_update_all(where="target.caption IS NULL")
            result = merge.when_not_matched_insert_all().execute(data)
        added = int(getattr(result, "num_inserted_rows", 0) or 0)
        self._adds_since_compact += 1
        if self._adds_since_compact >= COMPACT_EVERY:
            try:
                self.compact()
            except (OSError, RuntimeError, ValueError) as exc:  # rows are committed already
                warnings.warn(f"{self._directory}: compaction skipped ({exc})", stacklevel=2)
        return added

    @guarded
    def compact(self, *, keep_versions: timedelta = KEEP_VERSIONS) -> dict:
        """Merge small fragments, fold new rows into existing indices, drop old versions.

        Safe while others read: versions younger than ``keep_versions`` stay on disk. ``add``
        calls this every ``COMPACT_EVERY`` batches; call it after a big ingest too.

        Returns:
            ``{"fragments_before", "fragments_after", "versions_removed"}``.
        """
        with write_lock(self._directory):
            report = compact_table(self._table, FRAGMENT_ROWS, keep_versions)
        self._adds_since_compact = 0
        return report

    # -- ANN index ----------------------------------------------------------------------------
    @guarded
    def has_ann(self) -> bool:
        """Whether the vector column has an ANN index."""
        return any("vector" in list(i.columns) for i in self._table.list_indices())

    def ann_params(self, num_rows: int | None = None, index_type: str | None = None) -> dict:
        """Default ANN parameters for ``num_rows`` rows (default: the current count)."""
        n = self.count() if num_rows is None else int(num_rows)
        return ann_params(n, self.embed_dim, index_type)

    @guarded
    def build_ann(
        self,
        *,
        num_partitions: int | None = None,
        num_sub_vectors: int | None = None,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        index_type: str | None = None,
        force: bool = False,
    ) -> bool:
        """Build (or rebuild) the ANN index on the vectors (cosine).

        Skipped below ``ANN_MIN_ROWS`` rows unless ``force``: brute force is fast and exact there.
        Rows added later are searched exactly beside the index and folded into it by
        ``compact``. The search defaults (``nprobes``, ``refine_factor``) are recorded in the
        index record, so every reader searches the same way.

        Args:
            num_partitions: IVF cells (default rows / 4096).
            num_sub_vectors: IVF_PQ only: sub-vectors, must divide ``embed_dim`` (default dim/8).
            nprobes: cells searched per query (default 85% of cells, at least 20).
            refine_factor: exact re-scoring of ``k * refine_factor`` candidates (default 5).
            index_type: ``IVF_SQ`` (default), ``IVF_PQ`` (8x smaller in memory, lower recall),
                ``IVF_RQ`` or ``IVF_HNSW_SQ``.
            force: build even on a small table.

        Returns:
            Whether an index was built.
        """
        n = self.count()
        if n < ANN_MIN_ROWS and not force:
            return False
        if n == 0:
            raise InputError(f"{self._directory}: the index is empty; add chips first")
        params = ann_params(
            n,
            self.embed_dim,
            index_type,
            num_partitions=num_partitions,
            num_sub_vectors=num_sub_vectors,
            nprobes=nprobes,
            refine_factor=refine_factor,
        )
        config = ann_config(params)
        self.compact()  # index fewer, bigger fragments
        with write_lock(self._directory):
            self._table.checkout_latest()
            self._table.create_index("vector", config=config, replace=True)
        self.meta["ann"] = params | {"rows_at_build": n}
        write_json_atomic(self._directory / META_FILE, self.meta)
        self._meta_mtime = self._meta_stamp()
        return True

    # -- caption full-text index ---------------------------------------------------------------
    @guarded
    def has_caption_index(self) -> bool:
        """Whether the caption column has a full-text (inverted) index."""
        return any("caption" in list(i.columns) for i in self._table.list_indices())

    @guarded
    def captioned_count(self) -> int:
        """Number of chips with a caption."""
        return int(self._table.count_rows("caption IS NOT NULL"))

    @guarded
    def build_caption_index(self, *, replace: bool = False) -> bool:
        """Build the full-text (BM25) index of captions, Lance's native one (offline).

        Returns:
            Whether an index was built (False: it exists and ``replace`` is False, or no chip
            has a caption).
        """
        from lancedb.index import FTS

        if (self.has_caption_index() and not replace) or not self.captioned_count():
            return False
        with write_lock(self._directory):
            self._table.checkout_latest()
            self._table.create_index("caption", config=FTS(with_position=False), replace=True)
        return True

    # -- reading ------------------------------------------------------------------------------
    @guarded
    def get(self, chip_id: str) -> dict | None:
        """The stored row (id, path, window, bands) of one chip, or None."""
        rows = (
            self._table.search()
            .where(f"id = {sql_str(chip_id)}")
            .select(["id", "path", "window", "bands"])
            .limit(1)
            .to_arrow()
            .to_pylist()
        )
        return rows[0] if rows else None

    @guarded
    def count(self) -> int:
        """Number of chips stored."""
        return self._table.count_rows()

    @property
    def version(self) -> int:
        """The table's version: it changes with every write (add, delete, compaction, index
        build) by this or another process, so anything derived from the rows can key on it."""
        with repair.guard(self._directory):
            return int(self._table.version)

    @guarded
    def search(
        self,
        vector: np.ndarray,
        *,
        k: int = 10,
        bbox: tuple[float, float, float, float] | None = None,
        time_range: tuple[datetime | None, datetime | None] | None = None,
        source: str | None = None,
        query_model_version: str | None = None,
        exact: bool | None = None,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        text: str | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chips nearest to ``vector`` by cosine similarity, best first.

        With ``text``, a hybrid search: vector hits and caption full-text (BM25) hits, fused by
        reciprocal rank; ``score`` stays the exact cosine similarity, ``caption_score`` and
        ``fused_score`` say how the caption matched and the order.

        Args:
            vector: query embedding (``embed_dim`` floats; normalised here).
            k: hits wanted (1..10000).
            bbox: (W, S, E, N) in degrees, EPSG:4326: chips whose footprint bbox intersects it.
                W > E means a box crossing the antimeridian. Chips without footprint never match.
            time_range: (after, before), inclusive, either may be None; aware datetimes are
                converted to UTC. Chips with unknown acquisition time never match.
            source: path prefix (``/data/2016/``) or glob (``*/S2*_2016*.tif``) on stored paths.
            query_model_version: version of the model that embedded ``vector``; refused
                (``IndexMismatchError``) when it is not the index's.
            exact: True forces brute force; default uses the ANN index when there is one.
            nprobes, refine_factor: ANN search effort (default: recorded at ``build_ann``).
            text: words to match against stored captions (hybrid search). The first such
                query builds the caption index if ingest did not.

        Raises:
            IndexMismatchError: the query comes from another model version.
            InputError: wrong vector size, bad k, bbox or time range; ``text`` on an index
                without captions.
        """
        [v] = self.unit_queries(vector, k, query_model_version)
        where = where_clause(bbox, time_range, source)
        self._reload_meta_if_changed()
        if text is not None and text.strip():
            return self._query_hybrid(v, text.strip(), int(k), where, exact, nprobes, refine_factor)
        hits = self._query(v, int(k), where, exact, nprobes, refine_factor)
        if where and not exact and len(hits) < k and self.has_ann():
            # a selective filter can leave too few candidates in the probed cells: go exact
            hits = self._query(v, int(k), where, True, None, None)
        return hits

    @guarded
    def search_many(
        self,
        vectors: np.ndarray,
        *,
        k: int = 10,
        query_model_version: str | None = None,
        memory: VectorSearcher | None = None,
    ) -> list[list[SearchHit]]:
        """The ``k`` chips nearest to each of several query vectors (no filters), best first.

        With ``memory`` (any ``VectorSearcher`` of this index: ``index.memory.MemoryVectors``,
        ``index.faiss_hnsw.HnswVectors``), it answers all queries in one batch; without it,
        each query goes through ``search``. Which searcher to use is the search task's choice
        (``skylens.tasks.search``); this store never imports them.

        Args:
            vectors: (N, ``embed_dim``) query embeddings (normalised here).
            k: hits wanted per query (1..10000).
            query_model_version: as for ``search``.
            memory: a batched searcher holding this index's vectors.

        Raises:
            IndexMismatchError: the queries come from another model version.
            InputError: wrong vector size, a zero or non-finite vector, bad k.
        """
        queries = self.unit_queries(vectors, k, query_model_version)
        if memory is None:
            return [self.search(q, k=k) for q in queries]
        if memory.index is not self:
            raise ValueError("memory holds the vectors of another index")
        return memory.search(queries, int(k))

    def unit_queries(
        self, vectors: np.ndarray, k: int, query_model_version: str | None
    ) -> np.ndarray:
        """Checked query vectors as (N, D) rows of unit length (for any ``VectorSearcher``).

        Raises:
            IndexMismatchError: ``query_model_version`` is not the index's.
            InputError: wrong vector size, a zero or non-finite vector, ``k`` out of 1..MAX_K.
        """
        if query_model_version is not None and query_model_version != self.model_version:
            self.check_model("query model", query_model_version)
        v = np.asarray(vectors, np.float32)
        v = v.reshape(1, -1) if v.ndim <= 1 else v
        if v.ndim != 2 or v.shape[1] != self.embed_dim:
            raise InputError(
                f"query vector has {v.shape[-1]} dimensions; index {self._directory} holds "
                f"{self.embed_dim}-d vectors of model '{self.model_name}'"
            )
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise InputError("query vector is all zeros or not finite")
        if not 1 <= int(k) <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        return v / norms

    def _search_effort(self) -> dict:
        """The ANN effort recorded at build, or the defaults for an index built elsewhere."""
        ann = self.meta.get("ann") or {}
        return ann if "nprobes" in ann else self.ann_params()

    def _query(self, v, k, where, exact, nprobes, refine_factor) -> list[SearchHit]:
        ann = None if exact else self._search_effort()
        return vector_query(
            self._table,
            v,
            k,
            where,
            exact=exact,
            ann=ann,
            nprobes=nprobes,
            refine_factor=refine_factor,
        )

    def _query_hybrid(self, v, text, k, where, exact, nprobes, refine_factor) -> list[SearchHit]:
        if not self.has_caption_index():
            if not self.captioned_count():
                raise InputError(
                    f"{self._directory}: no chip has a caption, so captions cannot be matched; "
                    "build the index with `skylens index --caption`"
                )
            self.build_caption_index()
        ann = self._search_effort() if not exact and self.has_ann() else None
        return hybrid_query(
            self._table,
            v,
            text,
            k,
            where,
            exact=exact,
            ann=ann,
            nprobes=nprobes,
            refine_factor=refine_factor,
        )

    @guarded
    def stats(self) -> dict:
        """What the index holds: rows, distinct sources, model, ANN state, size on disk (bytes)."""
        import pyarrow.compute as pc

        self._reload_meta_if_changed()
        paths = self._table.search().select(["path"]).limit(None).to_arrow().column("path")
        table = self._table.stats()
        return {
            "index": str(self._directory),
            "rows": int(table["num_rows"]),
            "sources": int(pc.count_distinct(paths).as_py()) if len(paths) else 0,
            "model": self.model_name,
            "model_version": self.model_version,
            "embed_dim": self.embed_dim,
            "has_ann": self.has_ann(),
            "captioned": self.captioned_count(),
            "has_caption_index": self.has_caption_index(),
            "ann": self.meta.get("ann"),
            "fragments": int(table["fragment_stats"]["num_fragments"]),
            "version": self.version,
            "created": self.meta.get("created"),
            "schema_version": self.meta.get("schema_version"),
            "bytes_live": int(table["total_bytes"]),
            "bytes_on_disk": sum(
                f.stat().st_size for f in self._directory.rglob("*") if f.is_file()
            ),
        }

    @guarded
    def scan(self, columns: Sequence[str]):
        """Every row's ``columns`` as one ``pyarrow.Table``, read from one table version (what
        in-memory searchers load: ``memory.MemoryVectors``, ``faiss_hnsw.HnswVectors``)."""
        return self._table.search().select(list(columns)).limit(None).to_arrow()

    def drop(self) -> None:
        """Delete the whole index folder."""
        shutil.rmtree(self._directory)
