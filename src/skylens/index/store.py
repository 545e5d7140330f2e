"""The chip index: one LanceDB table per archive, one row per chip.

A row holds where a chip comes from (path, content digest, pixel window, bands), where it lies
(bounds in the raster CRS, WGS84 footprint as GeoJSON and its bbox in four float columns for fast
filtering), when it was acquired, which model embedded it, an optional caption, and the embedding
(a fixed-size float32 list). ``skylens-index.json`` beside the database records the model; an index
refuses to be written or queried by another model, since vectors of two models are not comparable.

Safety. Every LanceDB write commits a new table version atomically (Lance format: data files are
written first, then a manifest names them; a crash before the manifest leaves the previous version
intact). ``add`` validates a whole batch before writing and inserts it with one ``merge_insert``
keyed on ``id``, so a batch is all-or-nothing and re-adding a chip is a no-op; writers take turns
through a lock file (two concurrent merge_inserts of one new id would both insert it). Readers re-check the latest version before each query and old versions are kept for
``KEEP_VERSIONS`` after compaction, so a reader never sees a half-written batch or a file vanish
under it.

Speed. Each ``add`` is one small fragment; every ``COMPACT_EVERY`` adds the writer merges small
fragments into ones of ``FRAGMENT_ROWS`` rows (bigger ones are never rewritten), so appends stay
cheap as the table grows. Vector search is exact (brute force) until ``build_ann`` builds an
inverted-file index (IVF: vectors grouped by k-means cell, a query scans the nearest cells; Jegou
et al., "Product quantization for nearest neighbor search", TPAMI 2011) over 8-bit scalar-quantised
vectors. ANN candidates are re-scored with the exact vectors (``refine_factor``), so scores are
exact cosine similarities either way. ``bench/bench_search.py`` measures latency and recall@10 at
1M rows and why IVF_SQ is the default rather than IVF_PQ.

Captions. Chips ingested with a captioner carry a caption. ``search(..., text=...)`` then runs a
hybrid query: the vector search and a full-text (BM25) search of the caption column, fused by
reciprocal rank (Cormack et al., "Reciprocal rank fusion outperforms Condorcet and individual
rank learning methods", SIGIR 2009). Both are LanceDB's own features and run offline: Lance's
native inverted index (``lancedb.index.FTS``, no tantivy) and ``lancedb.rerankers.RRFReranker``.
Rows added after the full-text index was built are searched unindexed until ``compact`` folds them
in, so a caption is findable as soon as its row is committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from skylens.errors import IndexMismatchError, InputError, NotFoundError

if TYPE_CHECKING:
    from skylens.index.memory import MemoryVectors

META_FILE = "skylens-index.json"
LOCK_FILE = ".write.lock"  # writers take turns (flock); readers never wait
DB_DIR = "lancedb"
TABLE = "chips"
SCHEMA_VERSION = 1
ANN_MIN_ROWS = 10_000  # below this, brute force is both faster than ANN and exact
COMPACT_EVERY = 64  # adds (one small fragment each) between automatic compactions
FRAGMENT_ROWS = 65_536  # compaction target: fragments this big are never rewritten again
KEEP_VERSIONS = timedelta(minutes=10)  # superseded versions stay readable this long
MAX_K = 10_000
ID_CHUNK = 1_000  # ids per ``IN (...)`` filter in existing_ids

# ANN defaults, measured with bench/bench_search.py on 1M random 384-d unit vectors, 2 cores
# (bench/results/search.json): IVF_SQ, 244 cells, 208 probed, refine 5 -> recall@10 0.956, p50 28 ms,
# p99 40 ms (exact: p50 0.89 s); all 244 probed -> recall 1.0, p99 47 ms. On the same data IVF_PQ
# (48 sub-vectors, all cells, refine 100) reached recall 0.83 at p99 ~100 ms and took 4x longer to
# build; IVF_RQ (1 bit) 0.90 at refine 300; IVF_HNSW_SQ 0.41 at ef 400 (100k rows).
ANN_INDEX_TYPE = "IVF_SQ"  # 8-bit scalar quantisation: 1 byte per dimension, held in memory
ANN_ROWS_PER_PARTITION = 4_096  # IVF cells = rows / this
ANN_PROBE_FRACTION = 0.85  # share of cells searched: random vectors need most of them
ANN_MIN_NPROBES = 20
ANN_REFINE_FACTOR = 5  # re-score k * this candidates with the exact vectors
ANN_DIMS_PER_SUB_VECTOR = 8  # IVF_PQ only: one byte per 8 dimensions

SEARCH_COLUMNS = ["id", "path", "window", "bounds", "crs", "footprint", "caption", "acquired"]
HYBRID_CANDIDATES = 4  # each side of a hybrid query returns k * this before fusion
RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)


def _lancedb():
    """Import lancedb on first use (keeps ``skylens --help`` fast) with Lance's warnings muted.

    lancedb imports the REST client of Lance namespaces, whose hundreds of pydantic models and
    validated methods build their validators at import: about 0.35 s of CPU on every cold CLI
    call, for a client a local index never uses. Pydantic's ``defer_build`` (build on first
    use) is made the default for the length of this import only.
    """
    os.environ.setdefault("LANCEDB_LOG", "error")
    if "lancedb" in sys.modules:  # imported (or being imported: the import lock waits for it)
        import lancedb

        return lancedb
    try:
        from pydantic._internal._config import config_defaults
    except ImportError:  # another pydantic layout: import as is
        config_defaults = {}
    deferred = config_defaults.get("defer_build", False)
    config_defaults["defer_build"] = True
    try:
        import lancedb
    finally:
        config_defaults["defer_build"] = deferred
    return lancedb


def chip_schema(embed_dim: int) -> pa.Schema:
    """Arrow schema of the ``chips`` table for vectors of ``embed_dim`` dimensions."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("window", pa.list_(pa.int32(), 4)),  # col_off, row_off, width, height (px)
            pa.field("bounds", pa.list_(pa.float64(), 4)),  # minx, miny, maxx, maxy (raster CRS)
            pa.field("crs", pa.string()),
            pa.field("footprint", pa.string()),  # GeoJSON geometry, EPSG:4326, as text
            pa.field("lon_min", pa.float64()),
            pa.field("lat_min", pa.float64()),
            pa.field("lon_max", pa.float64()),
            pa.field("lat_max", pa.float64()),
            pa.field("acquired", pa.timestamp("us")),  # UTC, naive
            pa.field("bands", pa.string()),  # 1-based source bands rendered as RGB, "3,2,1"
            pa.field("source_digest", pa.string()),
            pa.field("caption", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), embed_dim)),
        ]
    )


# -- results ------------------------------------------------------------------------------------
@dataclass
class SearchHit:
    """One search result.

    Attributes:
        id: chip id (``ChipIndex.chip_id``).
        score: cosine similarity to the query in [-1, 1], higher is closer.
        path: source raster as ingested.
        window: pixel window (col_off, row_off, width, height).
        bounds: (minx, miny, maxx, maxy) in the raster CRS, None for ungeoreferenced images.
        crs: the raster CRS (e.g. ``EPSG:32618``) or None.
        footprint: GeoJSON geometry in EPSG:4326, or None.
        caption: stored caption, if any.
        acquired: acquisition time (UTC, naive), if known.
        caption_score: BM25 score of the caption against the query text (hybrid search only;
            None when the caption did not match).
        fused_score: reciprocal-rank-fusion score that ordered a hybrid search, else None.
    """

    id: str
    score: float
    path: str
    window: list[int]
    bounds: list[float] | None
    crs: str | None
    footprint: dict | None
    caption: str | None
    acquired: datetime | None
    caption_score: float | None = None
    fused_score: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (``acquired`` as ISO 8601 text)."""
        # field by field, not ``asdict``: its recursive deep copy of every footprint showed in
        # py-spy profiles of the service under bench/load.py; callers do not mutate the values
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["acquired"] = self.acquired.isoformat() if self.acquired else None
        return d

    def to_geojson_feature(self) -> dict:
        """GeoJSON Feature: the footprint as geometry (null when unknown), the rest as properties."""
        props = self.to_dict()
        geometry = props.pop("footprint")
        return {"type": "Feature", "id": self.id, "geometry": geometry, "properties": props}


def hits_to_geojson(hits: Iterable[SearchHit]) -> dict:
    """A GeoJSON FeatureCollection of hits, in rank order; hits without footprint get null geometry."""
    return {"type": "FeatureCollection", "features": [h.to_geojson_feature() for h in hits]}


# -- helpers ------------------------------------------------------------------------------------
def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _sql_float(x: float, what: str) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {x}")
    return repr(x)


def _naive_utc(t: datetime | str | None, what: str) -> datetime | None:
    """Datetime (or ISO text) as naive UTC; naive input is taken to be UTC already."""
    if t is None:
        return None
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t)
        except ValueError:
            raise InputError(f"{what}: '{t}' is not an ISO 8601 date/time") from None
    if not isinstance(t, datetime):
        raise InputError(f"{what}: expected a datetime, got {type(t).__name__}")
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t


def _sql_time(t: datetime) -> str:
    return "timestamp '" + t.strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


def _like_pattern(source: str) -> str:
    """A path prefix or glob (``*``, ``?``) as a SQL LIKE pattern (``\\`` escapes)."""
    out = []
    for ch in source:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    pattern = "".join(out)
    if not any(ch in source for ch in "*?"):
        pattern += "%"  # a plain prefix
    return pattern


def _geometry_bbox(geom: dict) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) of any GeoJSON geometry's coordinates."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, (list, tuple)):
            for sub in c:
                walk(sub)

    walk(geom.get("coordinates"))
    if not xs or not all(map(math.isfinite, xs + ys)):
        raise ValueError("footprint has no finite coordinates")
    return min(xs), min(ys), max(xs), max(ys)


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(max(1, min(n, cap)), 0, -1):
        if n % d == 0:
            return d
    return 1


def _hit_from_row(r: dict, cosine: float, **extra) -> SearchHit:
    """A ``SearchHit`` from a result row of ``SEARCH_COLUMNS`` and its cosine similarity."""
    return SearchHit(
        id=r["id"],
        score=round(min(1.0, max(-1.0, float(cosine))), 6),  # np.clip costs 6 us a hit
        path=r["path"],
        window=list(r["window"]) if r["window"] is not None else [],
        bounds=list(r["bounds"]) if r["bounds"] is not None else None,
        crs=r["crs"],
        footprint=json.loads(r["footprint"]) if r["footprint"] else None,
        caption=r["caption"],
        acquired=r["acquired"],
        **extra,
    )


def _default_nprobes(partitions: int) -> int:
    return min(partitions, max(ANN_MIN_NPROBES, math.ceil(partitions * ANN_PROBE_FRACTION)))


def _ann_config(params: dict):
    """The lancedb index config for ``params`` (see ``ChipIndex.ann_params``)."""
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


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _skylens_version() -> str:
    try:
        from skylens import __version__

        return __version__
    except ImportError:  # pragma: no cover - only in a broken install
        return "unknown"


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
        self._db = _lancedb().connect(
            str(self._directory / DB_DIR), read_consistency_interval=timedelta(0)
        )
        try:
            self._table = self._db.open_table(TABLE)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise NotFoundError(
                f"{self._directory}: index record found but its table is missing or unreadable "
                f"({exc}); rebuild it with `skylens index`"
            ) from None
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
        meta_path = d / META_FILE
        if meta_path.is_file():
            index = cls.open(d)
            index.check_model(model_name, model_version, embed_dim)
            return index
        # a crash between creating the table and writing the record leaves only DB_DIR: reuse it
        if d.exists() and (not d.is_dir() or any(p.name != DB_DIR for p in d.iterdir())):
            raise InputError(
                f"{d}: exists, is not empty and is not a skylens index; choose another index folder"
            )
        d.mkdir(parents=True, exist_ok=True)
        db = _lancedb().connect(str(d / DB_DIR))
        table = db.create_table(TABLE, schema=chip_schema(int(embed_dim)), exist_ok=True)
        if table.schema.field("vector").type.list_size != int(embed_dim) or table.count_rows():
            raise InputError(f"{d}: holds a leftover table without {META_FILE}; remove the folder")
        meta = {
            "model_name": model_name,
            "model_version": model_version,
            "embed_dim": int(embed_dim),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schema_version": SCHEMA_VERSION,
            "skylens_version": _skylens_version(),
        }
        _write_json_atomic(meta_path, meta)  # the record appears only once the table exists
        return cls(d, meta)

    @classmethod
    def open(cls, directory: str | Path) -> ChipIndex:
        """Open an existing index.

        Raises:
            NotFoundError: no index at ``directory`` (the message names the path).
            IndexMismatchError: the index was written by a newer skylens (unknown schema).
        """
        d = Path(directory)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            what = "does not exist" if not d.exists() else f"has no {META_FILE}"
            raise NotFoundError(
                f"{d}: not a skylens index ({what}); build one with `skylens index`"
            )
        try:
            meta = json.loads(meta_path.read_text())
            for key in ("model_name", "model_version", "embed_dim"):
                meta[key]  # noqa: B018 - presence check
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NotFoundError(f"{meta_path}: unreadable index record ({exc!r})") from None
        if int(meta.get("schema_version", 1)) > SCHEMA_VERSION:
            raise IndexMismatchError(
                f"{d}: index schema {meta['schema_version']} is newer than this skylens "
                f"understands ({SCHEMA_VERSION}); upgrade skylens"
            )
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
                "model, or build a new index for this one."
            )

    # -- writing ------------------------------------------------------------------------------
    @staticmethod
    def chip_id(source_digest: str, window: Sequence[int], model_version: str) -> str:
        """Stable chip id: 32 hex chars of BLAKE2b over content digest, pixel window and model."""
        key = f"{source_digest}|{','.join(str(int(v)) for v in window)}|{model_version}"
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def existing_ids(self, ids: Iterable[str], *, captioned_only: bool = False) -> set[str]:
        """Which of ``ids`` are already stored (for resuming an ingest).

        Args:
            ids: chip ids.
            captioned_only: count only rows that have a caption (an ingest with a captioner
                redoes the others to fill their captions, ``add(fill_captions=True)``).
        """
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found: set[str] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            where = "id IN (" + ",".join(_sql_str(x) for x in chunk) + ")"
            if captioned_only:
                where += " AND caption IS NOT NULL"
            rows = self._table.search().where(where).select(["id"]).limit(None).to_arrow()
            found.update(rows.column("id").to_pylist())
        return found

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
        data = self._rows_to_arrow(rows)
        with self._write_lock():
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

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive lock for writers of this index (two concurrent merge_inserts of the same
        new id would both insert it). POSIX ``flock``; a no-op where there is none."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self._directory / LOCK_FILE, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _rows_to_arrow(self, rows: Sequence[dict]) -> pa.Table:
        """Validate rows and build the Arrow batch (first occurrence of a duplicate id wins)."""
        dim = self.embed_dim
        schema = self._table.schema
        names = [f.name for f in schema]
        cols: dict[str, list] = {n: [] for n in names if n != "vector"}
        vectors = np.empty((len(rows), dim), np.float32)
        seen: set[str] = set()
        keep = 0
        for r in rows:
            where = f"chip {r.get('path')!s} window {r.get('window')!s}"
            if "vector" not in r or "path" not in r or "window" not in r:
                raise InputError(f"{where}: a row needs 'vector', 'path' and 'window'")
            v = np.asarray(r["vector"], np.float32).reshape(-1)
            if v.shape != (dim,):
                raise InputError(
                    f"{where}: vector has {v.size} dimensions; index {self._directory} holds "
                    f"{dim}-d vectors of model '{self.model_name}'"
                )
            if not np.isfinite(v).all() or not np.any(v):
                raise InputError(f"{where}: vector is all zeros or not finite")
            version = r.get("model_version") or self.model_version
            if version != self.model_version:
                self.check_model(r.get("model_name") or "?", version)
            try:
                window = [int(x) for x in r["window"]]
                if len(window) != 4:
                    raise ValueError("needs 4 values")
                bounds = [float(x) for x in r["bounds"]] if r.get("bounds") is not None else None
                if bounds is not None and len(bounds) != 4:
                    raise ValueError("bounds need 4 values")
                fp = r.get("footprint")
                if isinstance(fp, str):
                    fp = json.loads(fp)
                bbox = _geometry_bbox(fp) if fp else (None, None, None, None)
            except (TypeError, ValueError, AttributeError) as exc:
                raise InputError(f"{where}: bad window/bounds/footprint ({exc})") from None
            chip_id = r.get("id") or self.chip_id(r.get("source_digest") or "", window, version)
            if chip_id in seen:
                continue
            seen.add(chip_id)
            vectors[keep] = v
            keep += 1
            cols["id"].append(str(chip_id))
            cols["path"].append(str(r["path"]))
            cols["window"].append(window)
            cols["bounds"].append(bounds)
            cols["crs"].append(str(r["crs"]) if r.get("crs") else None)
            cols["footprint"].append(json.dumps(fp) if fp else None)
            for name, value in zip(("lon_min", "lat_min", "lon_max", "lat_max"), bbox, strict=True):
                cols[name].append(value)
            cols["acquired"].append(_naive_utc(r.get("acquired"), where))
            for name in ("bands", "source_digest", "caption"):
                cols[name].append(None if r.get(name) is None else str(r[name]))
            cols["model_name"].append(r.get("model_name") or self.model_name)
            cols["model_version"].append(version)
        arrays = []
        for f in schema:
            if f.name == "vector":
                flat = pa.array(vectors[:keep].reshape(-1), pa.float32())
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
            else:
                arrays.append(pa.array(cols[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def compact(self, *, keep_versions: timedelta = KEEP_VERSIONS) -> dict:
        """Merge small fragments, fold new rows into existing indices, drop old versions.

        Safe while others read: versions younger than ``keep_versions`` stay on disk. ``add``
        calls this every ``COMPACT_EVERY`` batches; call it after a big ingest too.

        Returns:
            ``{"fragments_before", "fragments_after", "versions_removed"}``.
        """
        with self._write_lock():
            self._table.checkout_latest()
            before = self._fragments()
            removed = None
            try:
                ds = self._table.to_lance()
            except ImportError:  # no pylance: lancedb's own optimize (1M-row fragments)
                self._table.optimize(cleanup_older_than=keep_versions)
            else:
                ds.optimize.compact_files(target_rows_per_fragment=FRAGMENT_ROWS)
                if list(self._table.list_indices()):
                    self._table.checkout_latest()
                    ds = self._table.to_lance()
                    ds.optimize.optimize_indices()
                removed = int(
                    getattr(ds.cleanup_old_versions(older_than=keep_versions), "old_versions", 0)
                )
            self._table.checkout_latest()
        self._adds_since_compact = 0
        return {
            "fragments_before": before,
            "fragments_after": self._fragments(),
            "versions_removed": removed,
        }

    def _fragments(self) -> int:
        return int(self._table.stats()["fragment_stats"]["num_fragments"])

    # -- ANN index ----------------------------------------------------------------------------
    def has_ann(self) -> bool:
        """Whether the vector column has an ANN index."""
        return any("vector" in list(i.columns) for i in self._table.list_indices())

    def ann_params(self, num_rows: int | None = None, index_type: str | None = None) -> dict:
        """Default ANN parameters for ``num_rows`` rows (default: the current count)."""
        n = self.count() if num_rows is None else int(num_rows)
        partitions = max(1, round(n / ANN_ROWS_PER_PARTITION))
        params = {
            "index_type": (index_type or ANN_INDEX_TYPE).upper(),
            "num_partitions": partitions,
            "nprobes": _default_nprobes(partitions),
            "refine_factor": ANN_REFINE_FACTOR,
        }
        if params["index_type"] in ("IVF_PQ", "IVF_HNSW_PQ"):
            params["num_sub_vectors"] = _largest_divisor_at_most(
                self.embed_dim, max(1, self.embed_dim // ANN_DIMS_PER_SUB_VECTOR)
            )
        return params

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
        params = self.ann_params(n, index_type)
        if num_partitions:
            params["num_partitions"] = int(num_partitions)
            params["nprobes"] = _default_nprobes(int(num_partitions))
        if num_sub_vectors:
            if self.embed_dim % int(num_sub_vectors):
                raise InputError(
                    f"num_sub_vectors {num_sub_vectors} must divide the {self.embed_dim} dimensions"
                )
            params["num_sub_vectors"] = int(num_sub_vectors)
        if nprobes:
            params["nprobes"] = int(nprobes)
        if refine_factor:
            params["refine_factor"] = int(refine_factor)
        config = _ann_config(params)
        self.compact()  # index fewer, bigger fragments
        with self._write_lock():
            self._table.checkout_latest()
            self._table.create_index("vector", config=config, replace=True)
        self.meta["ann"] = params | {"rows_at_build": n}
        _write_json_atomic(self._directory / META_FILE, self.meta)
        self._meta_mtime = self._meta_stamp()
        return True

    # -- caption full-text index ---------------------------------------------------------------
    def has_caption_index(self) -> bool:
        """Whether the caption column has a full-text (inverted) index."""
        return any("caption" in list(i.columns) for i in self._table.list_indices())

    def captioned_count(self) -> int:
        """Number of chips with a caption."""
        return int(self._table.count_rows("caption IS NOT NULL"))

    def build_caption_index(self, *, replace: bool = False) -> bool:
        """Build the full-text (BM25) index of captions, Lance's native one (offline).

        Returns:
            Whether an index was built (False: it exists and ``replace`` is False, or no chip
            has a caption).
        """
        from lancedb.index import FTS

        if (self.has_caption_index() and not replace) or not self.captioned_count():
            return False
        with self._write_lock():
            self._table.checkout_latest()
            self._table.create_index("caption", config=FTS(with_position=False), replace=True)
        return True

    # -- reading ------------------------------------------------------------------------------
    def get(self, chip_id: str) -> dict | None:
        """The stored row (id, path, window, bands) of one chip, or None."""
        rows = (
            self._table.search()
            .where(f"id = {_sql_str(chip_id)}")
            .select(["id", "path", "window", "bands"])
            .limit(1)
            .to_arrow()
            .to_pylist()
        )
        return rows[0] if rows else None

    def count(self) -> int:
        """Number of chips stored."""
        return self._table.count_rows()

    @property
    def version(self) -> int:
        """The table's version: it changes with every write (add, delete, compaction, index
        build) by this or another process, so anything derived from the rows can key on it."""
        return int(self._table.version)

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
        [v] = self._unit_queries(vector, k, query_model_version)
        where = self._where(bbox, time_range, source)
        self._reload_meta_if_changed()
        if text is not None and text.strip():
            return self._query_hybrid(v, text.strip(), int(k), where, exact, nprobes, refine_factor)
        hits = self._query(v, int(k), where, exact, nprobes, refine_factor)
        if where and not exact and len(hits) < k and self.has_ann():
            # a selective filter can leave too few candidates in the probed cells: go exact
            hits = self._query(v, int(k), where, True, None, None)
        return hits

    def search_many(
        self,
        vectors: np.ndarray,
        *,
        k: int = 10,
        query_model_version: str | None = None,
        memory: MemoryVectors | None = None,
    ) -> list[list[SearchHit]]:
        """The ``k`` chips nearest to each of several query vectors (no filters), best first.

        With ``memory`` (``MemoryVectors``), one matrix product scores every query exactly
        against the vectors held in memory; without it, each query goes through ``search``.

        Args:
            vectors: (N, ``embed_dim``) query embeddings (normalised here).
            k: hits wanted per query (1..10000).
            query_model_version: as for ``search``.
            memory: the vectors of this index held in memory.

        Raises:
            IndexMismatchError: the queries come from another model version.
            InputError: wrong vector size, a zero or non-finite vector, bad k.
        """
        queries = self._unit_queries(vectors, k, query_model_version)
        if memory is None:
            return [self.search(q, k=k) for q in queries]
        if memory.index is not self:
            raise ValueError("memory holds the vectors of another index")
        return memory.search(queries, int(k))

    def _unit_queries(
        self, vectors: np.ndarray, k: int, query_model_version: str | None
    ) -> np.ndarray:
        """Checked query vectors as (N, D) rows of unit length."""
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

    @staticmethod
    def _where(
        bbox: tuple[float, float, float, float] | None,
        time_range: tuple[datetime | None, datetime | None] | None,
        source: str | None,
    ) -> str | None:
        clauses = []
        if bbox is not None:
            try:
                w, s, e, n = (float(x) for x in bbox)
            except (TypeError, ValueError):
                raise InputError(f"bbox must be (W, S, E, N) degrees, got {bbox!r}") from None
            if not (-90 <= s <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180):
                raise InputError(
                    f"bbox {bbox!r} is not (W, S, E, N) degrees with -90 <= S <= N <= 90 and "
                    "-180 <= W, E <= 180"
                )
            lat = f"lat_max >= {_sql_float(s, 'S')} AND lat_min <= {_sql_float(n, 'N')}"
            if w <= e:
                lon = f"lon_max >= {_sql_float(w, 'W')} AND lon_min <= {_sql_float(e, 'E')}"
            else:  # crosses the antimeridian: [W, 180] or [-180, E]
                lon = f"(lon_max >= {_sql_float(w, 'W')} OR lon_min <= {_sql_float(e, 'E')})"
            clauses.append(f"{lat} AND {lon}")
        if time_range is not None:
            after, before = time_range
            after = _naive_utc(after, "time range start")
            before = _naive_utc(before, "time range end")
            if after and before and after > before:
                raise InputError(f"time range starts ({after}) after it ends ({before})")
            if after:
                clauses.append(f"acquired >= {_sql_time(after)}")
            if before:
                clauses.append(f"acquired <= {_sql_time(before)}")
        if source:
            clauses.append(f"path LIKE {_sql_str(_like_pattern(str(source)))}")
        return " AND ".join(f"({c})" for c in clauses) if clauses else None

    def _query(
        self,
        v: np.ndarray,
        k: int,
        where: str | None,
        exact: bool | None,
        nprobes: int | None,
        refine_factor: int | None,
    ) -> list[SearchHit]:
        ann = self.meta.get("ann") or {}
        q = self._table.search(v, vector_column_name="vector").distance_type("cosine").limit(k)
        if where:
            q = q.where(where, prefilter=True)
        if exact:
            q = q.bypass_vector_index()
        else:  # no effect without an index
            if not nprobes and "nprobes" not in ann:  # an index built outside build_ann
                ann = self.ann_params()
            q = q.nprobes(int(nprobes or ann["nprobes"]))
            q = q.refine_factor(int(refine_factor or ann.get("refine_factor", ANN_REFINE_FACTOR)))
        table = q.select([*SEARCH_COLUMNS, "_distance"]).to_arrow()
        hits = []
        for r in table.to_pylist():
            hits.append(_hit_from_row(r, 1.0 - r["_distance"]))
        return hits

    def _query_hybrid(
        self,
        v: np.ndarray,
        text: str,
        k: int,
        where: str | None,
        exact: bool | None,
        nprobes: int | None,
        refine_factor: int | None,
    ) -> list[SearchHit]:
        from lancedb.rerankers import RRFReranker

        if not self.has_caption_index():
            if not self.captioned_count():
                raise InputError(
                    f"{self._directory}: no chip has a caption, so captions cannot be matched; "
                    "build the index with `skylens index --caption`"
                )
            self.build_caption_index()
        ann = self.meta.get("ann") or {}
        q = (
            self._table.search(
                query_type="hybrid", vector_column_name="vector", fts_columns="caption"
            )
            .vector(v)
            .text(text)
            .distance_type("cosine")
            .limit(k * HYBRID_CANDIDATES)
        )
        if where:
            q = q.where(where, prefilter=True)
        if exact:
            q = q.bypass_vector_index()
        elif self.has_ann():
            q = q.nprobes(int(nprobes or ann.get("nprobes") or self.ann_params()["nprobes"]))
            q = q.refine_factor(int(refine_factor or ann.get("refine_factor", ANN_REFINE_FACTOR)))
        q = q.rerank(RRFReranker(K=RRF_K, return_score="all"))
        rows = q.select([*SEARCH_COLUMNS, "vector"]).to_arrow().to_pylist()
        hits = []
        for r in rows[:k]:
            vec = np.asarray(r["vector"], np.float32)
            cos = float(vec @ v / max(float(np.linalg.norm(vec)), 1e-12))
            bm25 = r.get("_score")
            hits.append(
                _hit_from_row(
                    r,
                    cos,
                    caption_score=None if bm25 is None else round(float(bm25), 6),
                    fused_score=round(float(r["_relevance_score"]), 6),
                )
            )
        return hits

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

    def drop(self) -> None:
        """Delete the whole index folder."""
        shutil.rmtree(self._directory)
