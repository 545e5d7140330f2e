"""The index record, ``skylens-index.json``: which model filled the table (name, version,
dimension), when, and with which schema; written only once the table exists, read on open.

An index refuses to be written or queried by another model, since vectors of two models are not
comparable; the record is what says which model that is.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from skylens.errors import IndexMismatchError, InputError, NotFoundError
from skylens.index.schema import (
    DB_DIR,
    META_FILE,
    SCHEMA_VERSION,
    TABLE,
    chip_schema,
    lancedb_module,
    skylens_version,
    write_json_atomic,
)


def read_record(directory: Path) -> dict:
    """The record of the index at ``directory``.

    Raises:
        NotFoundError: no index there, or an unreadable record (the message names the path).
        IndexMismatchError: the index was written by a newer skylens (unknown schema).
    """
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        what = "does not exist" if not d.exists() else f"has no {META_FILE}"
        raise NotFoundError(f"{d}: not a skylens index ({what}); build one with `skylens index`")
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
    return meta


def create_table_and_record(
    directory: Path, *, model_name: str, model_version: str, embed_dim: int
) -> dict:
    """Create the empty chip table in a new (or empty) folder, then its record; returns it.

    Raises:
        InputError: the folder exists, is not empty and is not an index.
    """
    d = Path(directory)
    # a crash between creating the table and writing the record leaves only DB_DIR: reuse it
    if d.exists() and (not d.is_dir() or any(p.name != DB_DIR for p in d.iterdir())):
        raise InputError(
            f"{d}: exists, is not empty and is not a skylens index; choose another index folder"
        )
    d.mkdir(parents=True, exist_ok=True)
    db = lancedb_module().connect(str(d / DB_DIR))
    table = db.create_table(TABLE, schema=chip_schema(int(embed_dim)), exist_ok=True)
    if table.schema.field("vector").type.list_size != int(embed_dim) or table.count_rows():
        raise InputError(f"{d}: holds a leftover table without {META_FILE}; remove the folder")
    meta = {
        "model_name": model_name,
        "model_version": model_version,
        "embed_dim": int(embed_dim),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        "skylens_version": skylens_version(),
    }
    write_json_atomic(d / META_FILE, meta)  # the record appears only once the table exists
    return meta
