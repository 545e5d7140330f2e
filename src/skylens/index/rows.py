"""Writing chips: stable chip ids, row validation into one Arrow batch, the writers' lock.

A chip id is a hash of the source's content digest, the pixel window and the model version, so
the same chip embedded by the same model always gets the same id: an append keyed on it
(``merge_insert``) is idempotent, and a killed or repeated ingest (in one process or on Ray,
``skylens.scale``) adds no duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from skylens.errors import InputError
from skylens.index.filters import naive_utc, sql_str
from skylens.index.schema import LOCK_FILE

if TYPE_CHECKING:
    from skylens.index.store import ChipIndex

ID_CHUNK = 1_000  # ids per ``IN (...)`` filter in existing_ids


def compact_table(table, fragment_rows: int, keep_versions) -> dict:
    """Merge small fragments of ``table`` into ones of ``fragment_rows``, fold new rows into its
    indices, drop versions older than ``keep_versions`` (call under ``write_lock``).

    Returns:
        ``{"fragments_before", "fragments_after", "versions_removed"}``.
    """
    table.checkout_latest()
    before = int(table.stats()["fragment_stats"]["num_fragments"])
    removed = None
    try:
        ds = table.to_lance()
    except ImportError:  # no pylance: lancedb's own optimize (1M-row fragments)
        table.optimize(cleanup_older_than=keep_versions)
    else:
        ds.optimize.compact_files(target_rows_per_fragment=fragment_rows)
        if list(table.list_indices()):
            table.checkout_latest()
            ds = table.to_lance()
            ds.optimize.optimize_indices()
        removed = int(getattr(ds.cleanup_old_versions(older_than=keep_versions), "old_versions", 0))
    table.checkout_latest()
    return {
        "fragments_before": before,
        "fragments_after": int(table.stats()["fragment_stats"]["num_fragments"]),
        "versions_removed": removed,
    }


def chip_id(source_digest: str, window: Sequence[int], model_version: str) -> str:
    """Stable chip id: 32 hex chars of BLAKE2b over content digest, pixel window and model."""
    key = f"{source_digest}|{','.join(str(int(v)) for v in window)}|{model_version}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def existing_ids(table, ids: Iterable[str], *, captioned_only: bool = False) -> set[str]:
    """Which of ``ids`` the LanceDB ``table`` holds (``ChipIndex.existing_ids``)."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    found: set[str] = set()
    for start in range(0, len(wanted), ID_CHUNK):
        chunk = wanted[start : start + ID_CHUNK]
        where = "id IN (" + ",".join(sql_str(x) for x in chunk) + ")"
        if captioned_only:
            where += " AND caption IS NOT NULL"
        rows = table.search().where(where).select(["id"]).limit(None).to_arrow()
        found.update(rows.column("id").to_pylist())
    return found


@contextlib.contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock for writers of this index (two concurrent merge_inserts of the same
    new id would both insert it). POSIX ``flock``; a no-op where there is none."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(Path(directory) / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def geometry_bbox(geom: dict) -> tuple[float, float, float, float]:
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


def rows_to_arrow(index: ChipIndex, rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """Validate rows and build the Arrow batch of ``schema`` (first of a duplicate id wins).

    Args:
        index: the index the rows are for (its model and dimension check each row).
        rows: as ``ChipIndex.add`` takes them.
        schema: the table's schema.

    Raises:
        InputError: a malformed row (names its path and window).
        IndexMismatchError: a row of another model version.
    """
    dim = index.embed_dim
    cols: dict[str, list] = {f.name: [] for f in schema if f.name != "vector"}
    vectors = np.empty((len(rows), dim), np.float32)
    seen: set[str] = set()
    for r in rows:
        v, values = _checked_row(index, r)
        if values["id"] in seen:
            continue
        seen.add(values["id"])
        vectors[len(seen) - 1] = v
        for name, value in values.items():
            cols[name].append(value)
    arrays = []
    for f in schema:
        if f.name == "vector":
            flat = pa.array(vectors[: len(seen)].reshape(-1), pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _checked_row(index: ChipIndex, r: dict) -> tuple[np.ndarray, dict[str, Any]]:
    """One row's vector and its other column values, checked (see ``rows_to_arrow``)."""
    dim = index.embed_dim
    where = f"chip {r.get('path')!s} window {r.get('window')!s}"
    if "vector" not in r or "path" not in r or "window" not in r:
        raise InputError(f"{where}: a row needs 'vector', 'path' and 'window'")
    v = np.asarray(r["vector"], np.float32).reshape(-1)
    if v.shape != (dim,):
        raise InputError(
            f"{where}: vector has {v.size} dimensions; index {index.directory} holds "
            f"{dim}-d vectors of model '{index.model_name}'"
        )
    if not np.isfinite(v).all() or not np.any(v):
        raise InputError(f"{where}: vector is all zeros or not finite")
    version = r.get("model_version") or index.model_version
    if version != index.model_version:
        index.check_model(r.get("model_name") or "?", version)
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
        bbox = geometry_bbox(fp) if fp else (None, None, None, None)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{where}: bad window/bounds/footprint ({exc})") from None
    values: dict[str, Any] = {
        "id": str(r.get("id") or chip_id(r.get("source_digest") or "", window, version)),
        "path": str(r["path"]),
        "window": window,
        "bounds": bounds,
        "crs": str(r["crs"]) if r.get("crs") else None,
        "footprint": json.dumps(fp) if fp else None,
        **dict(zip(("lon_min", "lat_min", "lon_max", "lat_max"), bbox, strict=True)),
        "acquired": naive_utc(r.get("acquired"), where),
        **{
            n: None if r.get(n) is None else str(r[n])
            for n in ("bands", "source_digest", "caption")
        },
        "model_name": r.get("model_name") or index.model_name,
        "model_version": version,
    }
    return v, values
