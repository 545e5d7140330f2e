"""The chip table's layout and what a search returns: schema, on-disk names, ``SearchHit``.

One row per chip: where it comes from (path, content digest, pixel window, bands), where it lies
(bounds in the raster CRS, WGS84 footprint as GeoJSON and its bbox in four float columns for fast
filtering), when it was acquired, which model embedded it, an optional caption, and the embedding
(a fixed-size float32 list). ``skylens-index.json`` beside the database records the model.

This module imports nothing else of ``skylens.index``: the store, the query builders and the
in-memory searchers (``memory``, ``faiss_hnsw``) all build hits here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

META_FILE = "skylens-index.json"
LOCK_FILE = ".write.lock"  # writers take turns (flock); readers never wait
DB_DIR = "lancedb"
TABLE = "chips"
SCHEMA_VERSION = 1
MAX_K = 10_000
SEARCH_COLUMNS = ["id", "path", "window", "bounds", "crs", "footprint", "caption", "acquired"]


def lancedb_module():
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
        match: calibrated probability in [0, 1] that the chip matches a text query (models that
            calibrate their scores, e.g. the default), else None.
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
    match: float | None = None

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


def hit_from_row(r: dict, cosine: float, **extra) -> SearchHit:
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


class VectorSearcher(Protocol):
    """Anything that answers batches of unit query vectors with hits of one index (exact in
    memory: ``skylens.index.memory.MemoryVectors``; graph ANN: ``skylens.index.faiss_hnsw``)."""

    index: object

    def search(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]: ...


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def skylens_version() -> str:
    try:
        from skylens import __version__

        return __version__
    except ImportError:  # pragma: no cover - only in a broken install
        return "unknown"
