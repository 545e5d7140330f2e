"""``from-webdataset``: web-scale image-text shards (img2dataset, RS5M, GAIA style) -> records.

img2dataset (Beaumont 2021) writes WebDataset tar shards (``KEY.jpg`` + ``KEY.txt`` +
``KEY.json``) or Parquet files whose rows hold the image bytes and caption; RS5M and GAIA
distribute their pairs in the same two shapes. Tar shards are read with the ``webdataset``
library, Parquet with pyarrow. Per sample: the image bytes (``jpg``/``jpeg``/``png``/``webp``/
``tif``), texts from ``txt`` and from the JSON fields ``caption``/``captions``/``text``/``texts``
(skylens's own export: ``{"kind", "text"}`` entries keep their kind), and ``label``, ``source``,
``licence``/``license``, ``geo``, ``split`` when the JSON carries them. Every image is decoded
once; an undecodable one fails naming the shard and key (or is logged with ``skip_bad``).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path

from skylens.curate.images import bytes_digest, bytes_size
from skylens.curate.pipeline import LOCAL, Runner, batched, run_batches, step_info
from skylens.curate.records import TEXT_KINDS, Record, make_record, text
from skylens.curate.sources import licence_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.errors import ImageReadError, InputError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")
PARQUET_IMAGE_COLUMNS = ("jpg", "image", "image_bytes", "png", "img")
PARQUET_TEXT_COLUMNS = ("caption", "text", "txt", "captions", "texts", "title")


def shard_files(inputs: list[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """(tar shards, parquet files) named by ``inputs`` (files or folders, sorted)."""
    tars, parquets = [], []
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(f"{p}: shard file or folder not found")
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.name.endswith(".tar") or f.name.endswith(".tar.gz"):
                tars.append(f)
            elif f.suffix == ".parquet":
                parquets.append(f)
    if not tars and not parquets:
        raise InputError(f"{', '.join(map(str, inputs))}: no .tar shards or .parquet files found")
    return tars, parquets


def _texts_from(fields: dict) -> list[dict]:
    out = []
    for key in ("txt", "caption", "text", "title"):
        v = fields.get(key)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        if isinstance(v, str) and v.strip():
            out.append(text("caption", v.strip()))
    for key in ("captions", "texts"):
        for v in fields.get(key) or []:
            if isinstance(v, dict) and v.get("kind") in TEXT_KINDS:
                out.append(text(v["kind"], str(v.get("text", "")), v.get("answer")))
            elif isinstance(v, str) and v.strip():
                out.append(text("caption", v.strip()))
    seen, unique = set(), []
    for t in out:
        if (t["kind"], t["text"], t["answer"]) not in seen:
            seen.add((t["kind"], t["text"], t["answer"]))
            unique.append(t)
    return unique


def tar_items(tars: list[Path]) -> Iterator[dict]:
    """Samples of tar shards as items ``{"key", "where", "image", "fields"}``."""
    import webdataset as wds

    for shard in tars:
        try:
            for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
                ext = next((e for e in IMAGE_EXTS if e in sample), None)
                fields: dict = {}
                if "json" in sample:
                    try:
                        fields.update(json.loads(sample["json"]))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        fields["json_error"] = True
                if "txt" in sample:
                    fields["txt"] = sample["txt"]
                where = f"{shard}:{sample['__key__']}"
                yield {
                    "key": sample["__key__"],
                    "where": where,
                    "image": sample.get(ext),
                    "fields": fields,
                }
        except (OSError, ValueError) as exc:  # tarfile.ReadError is an OSError... not always
            raise InputError(f"{shard}: not a readable tar shard ({exc})") from None


def parquet_items(files: list[Path]) -> Iterator[dict]:
    """Rows of Parquet files as items (image bytes column, text columns, other fields)."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:
            raise InputError(f"{f}: not a readable Parquet file ({exc})") from None
        names = pf.schema_arrow.names
        col = next((c for c in PARQUET_IMAGE_COLUMNS if c in names), None)
        if col is None:
            raise InputError(
                f"{f}: no image column (expected one of {', '.join(PARQUET_IMAGE_COLUMNS)})"
            )
        for batch in pf.iter_batches(batch_size=256):
            for i, row in enumerate(batch.to_pylist()):
                image = row.pop(col)
                if isinstance(image, dict):  # Hugging Face Image feature: {"bytes", "path"}
                    image = image.get("bytes")
                key = str(row.get("key") or row.get("id") or f"{f.stem}-{i}")
                yield {"key": key, "where": f"{f}:{key}", "image": image, "fields": row}


def webdataset_records(
    items: list[dict], source: str = "web", skip_bad: bool = False
) -> tuple[list[Record], list[dict]]:
    """Batch function: shard items -> records (see ``pipeline.BatchFn``)."""
    out, removed = [], []
    for item in items:
        try:
            if not item["image"]:
                raise ImageReadError(item["where"], "sample has no image")
            width, height = bytes_size(item["image"], item["where"])
        except ImageReadError as exc:
            if not skip_bad:
                raise
            removed.append({"id": item["key"], "reason": "unreadable image", "error": str(exc)})
            continue
        f = item["fields"]
        src = str(f.get("source") or source)
        texts = _texts_from(f)
        if not texts:
            removed.append({"id": item["key"], "reason": "no text"})
            continue
        geo = f.get("geo")
        out.append(
            make_record(
                image_bytes=bytes(item["image"]), width=width, height=height, texts=texts,
                source=src, licence=str(f.get("licence") or f.get("license") or licence_of(src)),
                label=f.get("label"), split=str(f.get("split") or "train"),
                geo=geo if isinstance(geo, (str, type(None))) else json.dumps(geo),
                digest=bytes_digest(item["image"]), meta={"key": item["key"], "where": item["where"]},
            )
        )  # fmt: skip
    return out, removed


def from_webdataset(
    inputs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    source: str = "web",
    skip_bad: bool = False,
    batch_size: int = 256,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Build a curated dataset from WebDataset tar shards and/or Parquet files.

    Args:
        inputs: shard files or folders holding them.
        out: new dataset folder.
        source: source name for samples whose JSON does not say.
        skip_bad: log undecodable images as removed instead of failing.
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    tars, parquets = shard_files(list(inputs))
    items = _chain(tar_items(tars), parquet_items(parquets))
    fn = functools.partial(webdataset_records, source=source, skip_bad=skip_bad)
    step = step_info("from-webdataset", inputs=list(inputs), source=source)
    with DatasetWriter(out, step=step, name=source, overwrite=overwrite) as w:
        run_batches(batched(items, batch_size), fn, w, desc="from-webdataset", runner=runner)
    return open_dataset(out)


def _chain(*iterators: Iterator[dict]) -> Iterator[dict]:
    for it in iterators:
        yield from it
