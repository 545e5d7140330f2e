"""The chip index: one LanceDB table per archive, one row per chip.

A row holds where the chip comes from (path, content digest, pixel window, bands), where it lies
(CRS bounds, WGS84 footprint and its bbox for fast filtering), when it was acquired, which model
embedded it, and the embedding. ``skylens-index.json`` beside the table records the model; an
index refuses to be written or queried by another model, since vectors of two models are not
comparable.

LanceDB appends are versioned and atomic: an interrupted ``add`` leaves the previous version
intact, so a killed ingest loses nothing already written.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from skylens.errors import IndexMismatchError, InputError, NotFoundError

META_FILE = "skylens-index.json"
TABLE = "chips"
SCHEMA_VERSION = 1
ANN_MIN_ROWS = 10_000  # below this, exact search is both faster and exact


def _schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("window", pa.list_(pa.int32(), 4)),
            pa.field("bounds", pa.list_(pa.float64(), 4)),
            pa.field("crs", pa.string()),
            pa.field("footprint", pa.string()),  # GeoJSON Polygon (EPSG:4326) as text
            pa.field("lon_min", pa.float64()),
            pa.field("lat_min", pa.float64()),
            pa.field("lon_max", pa.float64()),
            pa.field("lat_max", pa.float64()),
            pa.field("acquired", pa.timestamp("s")),
            pa.field("bands", pa.string()),
            pa.field("source_digest", pa.string()),
            pa.field("caption", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


@dataclass
class SearchHit:
    """One search result; ``score`` is cosine similarity in [-1, 1]."""

    id: str
    score: float
    path: str
    window: list[int]
    bounds: list[float] | None
    crs: str | None
    footprint: dict | None
    caption: str | None
    acquired: datetime | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["acquired"] = self.acquired.isoformat() if self.acquired else None
        return d

    def to_geojson_feature(self) -> dict:
        props = self.to_dict()
        geometry = props.pop("footprint")
        return {"type": "Feature", "id": self.id, "geometry": geometry, "properties": props}


def hits_to_geojson(hits: list[SearchHit]) -> dict:
    """FeatureCollection of hits; hits without a footprint carry ``geometry: null``."""
    return {"type": "FeatureCollection", "features": [h.to_geojson_feature() for h in hits]}


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class ChipIndex:
    """A folder holding a LanceDB table of chips and the model record."""

    def __init__(self, directory: Path, meta: dict) -> None:
        import lancedb

        self.directory = Path(directory)
        self.meta = meta
        self._db = lancedb.connect(str(self.directory / "lancedb"))
        self._table = self._db.open_table(TABLE)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create_or_open(
        cls, directory: str | Path, *, model_name: str, model_version: str, embed_dim: int
    ) -> ChipIndex:
        """Open the index at ``directory`` for this model, creating it when absent.

        Raises:
            IndexMismatchError: the index exists and was built with another model or version.
        """
        import lancedb

        d = Path(directory)
        meta_path = d / META_FILE
        if meta_path.is_file():
            index = cls.open(d)
            index.check_model(model_name, model_version, embed_dim)
            return index
        if d.exists() and any(d.iterdir()):
            raise InputError(
                f"{d}: folder exists, is not empty and is not a skylens index; choose another --index"
            )
        d.mkdir(parents=True, exist_ok=True)
        db = lancedb.connect(str(d / "lancedb"))
        db.create_table(TABLE, schema=_schema(embed_dim), exist_ok=True)
        meta = {
            "model_name": model_name,
            "model_version": model_version,
            "embed_dim": int(embed_dim),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schema_version": SCHEMA_VERSION,
            "skylens_version": _skylens_version(),
        }
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(meta_path)  # the record appears only once the table exists
        return cls(d, meta)

    @classmethod
    def open(cls, directory: str | Path) -> ChipIndex:
        """Open an existing index. Raises ``NotFoundError`` naming the path when there is none."""
        d = Path(directory)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            raise NotFoundError(
                f"{d}: no skylens index here (expected {META_FILE}); build one with `skylens index`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise NotFoundError(f"{meta_path}: unreadable index record ({exc})") from None
        return cls(d, meta)

    @property
    def model_name(self) -> str:
        return self.meta["model_name"]

    @property
    def model_version(self) -> str:
        return self.meta["model_version"]

    @property
    def embed_dim(self) -> int:
        return int(self.meta["embed_dim"])

    def check_model(
        self, model_name: str, model_version: str, embed_dim: int | None = None
    ) -> None:
        if model_version != self.model_version or (
            embed_dim is not None and embed_dim != self.embed_dim
        ):
            raise IndexMismatchError(
                f"{self.directory}: index was built with model '{self.model_name}' ({self.model_version}, "
                f"{self.embed_dim}-d); '{model_name}' ({model_version}) cannot write or query it. "
                "Use the index's model or build a new index."
            )

    # -- writing ------------------------------------------------------------------------------
    @staticmethod
    def chip_id(source_digest: str, window, model_version: str) -> str:
        """Stable id of a chip: hash of the source content digest, the window and the model."""
        key = f"{source_digest}|{','.join(str(int(v)) for v in window)}|{model_version}"
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def existing_ids(self, ids) -> set[str]:
        """Which of ``ids`` are already stored."""
        ids = list(ids)
        found: set[str] = set()
        if not ids or self.count() == 0:
            return found
        for i in range(0, len(ids), 2000):
            chunk = ids[i : i + 2000]
            where = "id IN (" + ",".join(_sql_str(x) for x in chunk) + ")"
            rows = self._table.search().where(where).select(["id"]).limit(len(chunk)).to_arrow()
            found.update(rows.column("id").to_pylist())
        return found

    def add(self, rows: list[dict]) -> int:
        """Append rows whose id is not stored yet; returns how many were added.

        Every row is validated before anything is written, so a bad batch never half-writes.
        """
        if not rows:
            return 0
        dim = self.embed_dim
        for r in rows:
            v = np.asarray(r["vector"])
            if v.shape != (dim,) or not np.isfinite(v).all():
                raise InputError(
                    f"chip {r.get('path')} {r.get('window')}: vector shape {v.shape} is not ({dim},) or not finite"
                )
            if r.get("model_version", self.model_version) != self.model_version:
                self.check_model(r.get("model_name", "?"), r["model_version"])
        seen: set[str] = set()
        fresh = []
        existing = self.existing_ids([r["id"] for r in rows])
        for r in rows:
            if r["id"] in existing or r["id"] in seen:
                continue
            seen.add(r["id"])
            fresh.append(r)
        if not fresh:
            return 0
        self._table.add(self._to_arrow(fresh))
        return len(fresh)

    def _to_arrow(self, rows: list[dict]) -> pa.Table:
        cols: dict[str, list] = {f.name: [] for f in _schema(self.embed_dim)}
        for r in rows:
            fp = r.get("footprint")
            if fp:
                ring = fp["coordinates"][0]
                lons, lats = [p[0] for p in ring], [p[1] for p in ring]
                bbox = (min(lons), min(lats), max(lons), max(lats))
            else:
                bbox = (None, None, None, None)
            cols["id"].append(r["id"])
            cols["path"].append(str(r["path"]))
            cols["window"].append([int(v) for v in r["window"]])
            cols["bounds"].append([float(v) for v in r["bounds"]] if r.get("bounds") else None)
            cols["crs"].append(r.get("crs"))
            cols["footprint"].append(json.dumps(fp) if fp else None)
            for name, v in zip(("lon_min", "lat_min", "lon_max", "lat_max"), bbox, strict=True):
                cols[name].append(v)
            cols["acquired"].append(r.get("acquired"))
            cols["bands"].append(r.get("bands"))
            cols["source_digest"].append(r.get("source_digest"))
            cols["caption"].append(r.get("caption"))
            cols["model_name"].append(r.get("model_name", self.model_name))
            cols["model_version"].append(r.get("model_version", self.model_version))
            cols["vector"].append(np.asarray(r["vector"], np.float32))
        schema = _schema(self.embed_dim)
        arrays = []
        for f in schema:
            if f.name == "vector":
                flat = pa.array(np.concatenate(cols["vector"]), pa.float32())
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, self.embed_dim))
            else:
                arrays.append(pa.array(cols[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    # -- reading ------------------------------------------------------------------------------
    def count(self) -> int:
        return self._table.count_rows()

    def has_ann(self) -> bool:
        return any(
            getattr(i, "index_type", "").startswith("IVF")
            or "vector" in str(getattr(i, "columns", ""))
            for i in self._table.list_indices()
        )

    def build_ann(
        self,
        *,
        num_partitions: int | None = None,
        num_sub_vectors: int | None = None,
        force: bool = False,
    ) -> bool:
        """Build an IVF-PQ cosine index when the table has ``ANN_MIN_ROWS`` rows or more.

        Returns whether an index was built. Defaults: sqrt(rows) partitions, dim/8 sub-vectors.
        """
        n = self.count()
        if n < ANN_MIN_ROWS and not force:
            return False
        parts = num_partitions or max(1, int(math.sqrt(n)))
        subs = num_sub_vectors or max(1, self.embed_dim // 8)
        self._table.create_index(
            metric="cosine",
            num_partitions=parts,
            num_sub_vectors=subs,
            index_type="IVF_PQ",
            replace=True,
        )
        self.meta["ann"] = {"type": "IVF_PQ", "num_partitions": parts, "num_sub_vectors": subs}
        (self.directory / META_FILE).write_text(json.dumps(self.meta, indent=2))
        return True

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
        nprobes: int = 32,
        refine_factor: int = 10,
    ) -> list[SearchHit]:
        """The ``k`` chips nearest to ``vector`` (cosine), optionally filtered.

        Args:
            bbox: (W, S, E, N) degrees: chips whose footprint bbox intersects it.
            time_range: (after, before) on acquisition time; either may be None.
            source: path prefix.
            query_model_version: version of the model that embedded ``vector``; refused if it
                differs from the index's (``IndexMismatchError``).
            exact: force brute-force search (default: ANN when an index exists).
        """
        if query_model_version is not None and query_model_version != self.model_version:
            self.check_model("query model", query_model_version)
        v = np.asarray(vector, np.float32).reshape(-1)
        if v.shape[0] != self.embed_dim:
            raise InputError(
                f"query vector has {v.shape[0]} dims; index {self.directory} holds {self.embed_dim}-d vectors"
            )
        clauses = []
        if bbox is not None:
            w, s, e, n = bbox
            clauses.append(
                f"lon_max >= {w} AND lon_min <= {e} AND lat_max >= {s} AND lat_min <= {n}"
            )
        if time_range is not None:
            after, before = time_range
            if after:
                clauses.append(f"acquired >= timestamp '{after.strftime('%Y-%m-%d %H:%M:%S')}'")
            if before:
                clauses.append(f"acquired <= timestamp '{before.strftime('%Y-%m-%d %H:%M:%S')}'")
        if source:
            clauses.append(f"path LIKE {_sql_str(source.replace('%', '').rstrip('*') + '%')}")
        q = self._table.search(v, vector_column_name="vector").metric("cosine").limit(k)
        if clauses:
            q = q.where(" AND ".join(f"({c})" for c in clauses), prefilter=True)
        if exact or (exact is None and "ann" not in self.meta):
            q = q.bypass_vector_index()
        else:
            q = q.nprobes(nprobes).refine_factor(refine_factor)
        rows = q.select(
            [
                "id",
                "path",
                "window",
                "bounds",
                "crs",
                "footprint",
                "caption",
                "acquired",
                "_distance",
            ]
        ).to_list()
        return [
            SearchHit(
                id=r["id"],
                score=round(1.0 - float(r["_distance"]), 6),
                path=r["path"],
                window=list(r["window"]),
                bounds=list(r["bounds"]) if r["bounds"] is not None else None,
                crs=r["crs"],
                footprint=json.loads(r["footprint"]) if r["footprint"] else None,
                caption=r["caption"],
                acquired=r["acquired"],
            )
            for r in rows
        ]

    def stats(self) -> dict:
        size = sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())
        sources = (
            self._table.search().select(["path"]).limit(None).to_arrow().column("path").unique()
        )
        return {
            "index": str(self.directory),
            "rows": self.count(),
            "sources": len(sources),
            "model": self.model_name,
            "model_version": self.model_version,
            "embed_dim": self.embed_dim,
            "ann": self.meta.get("ann"),
            "created": self.meta.get("created"),
            "bytes_on_disk": size,
        }

    def compact(self) -> None:
        """Merge the small fragments of many appends and drop old versions (safe when idle)."""
        self._table.optimize()

    def drop(self) -> None:
        shutil.rmtree(self.directory)


def _skylens_version() -> str:
    try:
        from skylens import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"
