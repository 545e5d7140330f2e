"""The curated record: one image (or a window of one) with its texts, labels, boxes and place.

A curated dataset is a table of these records (see :mod:`skylens.curate.store`). The schema is
defined once, here, as a pyarrow schema, so that every step, the Parquet files, the Ray Data
batches of ``skylens.scale`` and the exports agree on names and types.

Record fields:
    id: stable identifier (hash of source, image reference and window; see :func:`record_id`).
    image_path: file of the image (absolute), or None when the pixels travel as ``image_bytes``.
    image_window: ``[col_off, row_off, width, height]`` in pixels of ``image_path``, or None
        for the whole image (region crops of detections, chips of a raster).
    image_bytes: encoded image (JPEG/PNG) when the source gave bytes (web shards) or the pixels
        were rendered (16-bit raster chips); these are the record's own pixels, already
        windowed (``image_path``/``image_window`` then say where they came from).
    width, height: size of the (windowed) image in pixels, when known (else 0).
    texts: list of ``{"kind", "text", "answer"}``; ``kind`` is one of :data:`TEXT_KINDS`;
        ``answer`` is set for ``qa`` texts only (the true answer from the annotations).
    conversations: multi-turn instruction data, list of ``{"role": "user"|"assistant",
        "content"}`` (LLaVA-style turns), empty unless made by ``instruct``.
    source: dataset the record came from (``nwpu_resisc45``, ``dota``, ``osm``...).
    licence: licence of the source, as its README states it.
    label: scene class in words (``dense residential``), or None.
    objects: list of ``{"name", "bbox", "difficult"}``; ``bbox`` ``[xmin, ymin, xmax, ymax]`` in
        pixels of the (windowed) image.
    geo: GeoJSON geometry (EPSG:4326 footprint) as a JSON string, or None.
    split: ``train``/``val``/``test`` as the source defines it, else ``train``.
    digest: BLAKE2b hex digest of the image content (file bytes, plus the window when windowed).
    meta: free JSON string (source-specific facts: OSM tags, GSD, original file name...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from skylens.errors import InputError

#: Kinds of text a record may carry.
TEXT_KINDS: tuple[str, ...] = ("caption", "class_prompt", "tag_caption", "qa", "instruction")

TEXT_TYPE = pa.struct([("kind", pa.string()), ("text", pa.string()), ("answer", pa.string())])
OBJECT_TYPE = pa.struct(
    [("name", pa.string()), ("bbox", pa.list_(pa.float32())), ("difficult", pa.bool_())]
)
TURN_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image_path", pa.string()),
        ("image_window", pa.list_(pa.int32())),
        ("image_bytes", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("texts", pa.list_(TEXT_TYPE)),
        ("conversations", pa.list_(TURN_TYPE)),
        ("source", pa.string()),
        ("licence", pa.string()),
        ("label", pa.string()),
        ("objects", pa.list_(OBJECT_TYPE)),
        ("geo", pa.string()),
        ("split", pa.string()),
        ("digest", pa.string()),
        ("meta", pa.string()),
    ]
)
FIELDS: tuple[str, ...] = tuple(SCHEMA.names)

Record = dict[str, Any]


def record_id(source: str, ref: str, window: Sequence[int] | None = None, extra: str = "") -> str:
    """A stable 16-hex-character id from the source name, image reference and window."""
    key = f"{source}|{ref}|{list(window) if window else ''}|{extra}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def text(kind: str, value: str, answer: str | None = None) -> dict:
    """One entry of ``texts``; ``kind`` must be in :data:`TEXT_KINDS`."""
    if kind not in TEXT_KINDS:
        raise InputError(f"unknown text kind '{kind}' (choose from {', '.join(TEXT_KINDS)})")
    return {"kind": kind, "text": value, "answer": answer}


def make_record(**fields: Any) -> Record:
    """A record with every schema field present (missing ones None/empty), unknown ones refused."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise InputError(f"unknown record fields: {', '.join(sorted(unknown))}")
    rec: Record = {name: None for name in FIELDS}
    rec.update(texts=[], conversations=[], objects=[], width=0, height=0, split="train")
    rec.update(fields)
    if isinstance(rec.get("meta"), Mapping):
        rec["meta"] = json.dumps(rec["meta"], sort_keys=True, ensure_ascii=False)
    if isinstance(rec.get("geo"), Mapping):
        rec["geo"] = json.dumps(rec["geo"], ensure_ascii=False)
    if not rec.get("id"):
        ref = rec.get("image_path") or rec.get("digest") or ""
        rec["id"] = record_id(str(rec.get("source") or ""), str(ref), rec.get("image_window"))
    return rec


def to_table(records: Iterable[Record]) -> pa.Table:
    """Records -> a pyarrow Table with :data:`SCHEMA` (the batch format of Ray Data)."""
    rows = list(records)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def from_table(table: pa.Table | pa.RecordBatch) -> list[Record]:
    """A pyarrow Table or RecordBatch -> records (plain dicts)."""
    return table.to_pylist()


def meta_of(record: Mapping[str, Any]) -> dict:
    """The record's ``meta`` as a dict."""
    raw = record.get("meta")
    return json.loads(raw) if raw else {}


def texts_of(record: Mapping[str, Any], kind: str | None = None) -> list[str]:
    """Text values of ``record`` (all kinds, or one)."""
    return [t["text"] for t in record.get("texts") or [] if kind is None or t["kind"] == kind]
