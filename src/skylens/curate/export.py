"""``export``: a curated dataset -> WebDataset tar shards, Parquet, or a Hugging Face ``datasets`` folder.

* ``webdataset``: tar shards written with the ``webdataset`` library's ``ShardWriter``
  (``shard-000000.tar`` ...), each sample ``KEY.jpg`` (the image, windowed and re-encoded when
  needed; original JPEG bytes otherwise), ``KEY.txt`` (its first caption, as img2dataset writes)
  and ``KEY.json`` (every other field of the record), so OpenCLIP-style loaders read it as is.
* ``parquet``: the records with a ``jpg`` column of image bytes (img2dataset's Parquet shape).
* ``hf``: ``datasets.Dataset.save_to_disk`` with an ``Image`` feature; ``datasets.load_from_disk``
  reads it back.

Output folders are written atomically (temporary sibling, renamed when complete).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from skylens.curate.images import record_jpeg
from skylens.curate.pipeline import progress_bar
from skylens.curate.records import Record
from skylens.curate.store import open_dataset
from skylens.errors import InputError, MissingDependencyError

FORMATS = ("webdataset", "parquet", "hf")


def sample_json(record: Record) -> dict:
    """The JSON side of a record (everything but the pixels), ``geo`` and ``meta`` parsed."""
    out = {k: v for k, v in record.items() if k != "image_bytes"}
    for key in ("geo", "meta"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def first_caption(record: Record) -> str:
    for kind in ("caption", "tag_caption", "class_prompt"):
        for t in record.get("texts") or []:
            if t["kind"] == kind:
                return t["text"]
    return ""


def _samples(ds) -> Iterator[tuple[Record, bytes]]:
    for rec in ds.records():
        yield rec, record_jpeg(rec)


def export(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str = "webdataset",
    shard_size: int = 1000,
    overwrite: bool = False,
) -> dict:
    """Export a curated dataset.

    Args:
        dataset: curated dataset folder.
        out: new output folder.
        fmt: ``webdataset``, ``parquet`` or ``hf``.
        shard_size: samples per tar shard / Parquet file.

    Returns:
        ``{"format", "out", "samples", "files"}``.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    ds = open_dataset(dataset)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; choose a new output folder")
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        writer = {"webdataset": _write_webdataset, "parquet": _write_parquet, "hf": _write_hf}[fmt]
        with progress_bar(ds.count, f"export {fmt}") as bar:
            n = writer(ds, tmp, shard_size, bar)
        (tmp / "manifest.json").write_text(
            json.dumps(
                {**ds.manifest, "exported": {"format": fmt, "samples": n}}, indent=2, default=str
            )
        )
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return {"format": fmt, "out": str(out), "samples": n, "files": files}


def _write_webdataset(ds, tmp: Path, shard_size: int, bar) -> int:
    try:
        import webdataset as wds
    except ImportError:
        raise MissingDependencyError(
            "webdataset export needs: pip install skylens[curate]"
        ) from None
    n = 0
    with wds.ShardWriter(str(tmp / "shard-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for rec, jpg in _samples(ds):
            sink.write(
                {
                    "__key__": rec["id"],
                    "jpg": jpg,
                    "txt": first_caption(rec),
                    "json": json.dumps(sample_json(rec), ensure_ascii=False, default=str),
                }
            )
            n += 1
            bar.update(1)
    return n


def _write_parquet(ds, tmp: Path, shard_size: int, bar) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, part, rows = 0, 0, []

    def flush():
        nonlocal part, rows
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), tmp / f"part-{part:05d}.parquet")
            part, rows = part + 1, []

    for rec, jpg in _samples(ds):
        row = {k: v for k, v in rec.items() if k != "image_bytes"}
        row["jpg"] = jpg
        row["caption"] = first_caption(rec)
        rows.append(row)
        n += 1
        bar.update(1)
        if len(rows) >= shard_size:
            flush()
    flush()
    return n


def _write_hf(ds, tmp: Path, shard_size: int, bar) -> int:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError(
            "hf export needs the datasets library: pip install datasets"
        ) from None

    def gen():
        for rec, jpg in _samples(ds):
            bar.update(1)
            yield {
                "id": rec["id"],
                "image": {"bytes": jpg, "path": None},
                "caption": first_caption(rec),
                "texts": json.dumps(rec["texts"], ensure_ascii=False),
                "conversations": json.dumps(rec["conversations"], ensure_ascii=False),
                "source": rec["source"] or "",
                "licence": rec["licence"] or "",
                "label": rec["label"] or "",
                "split": rec["split"] or "",
                "geo": rec["geo"] or "",
            }

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            **{
                k: datasets.Value("string")
                for k in (
                    "caption",
                    "texts",
                    "conversations",
                    "source",
                    "licence",
                    "label",
                    "split",
                    "geo",
                )
            },
        }
    )
    hf = datasets.Dataset.from_generator(gen, features=features, cache_dir=str(tmp / ".cache"))
    hf.save_to_disk(str(tmp / "hf"))
    shutil.rmtree(tmp / ".cache", ignore_errors=True)
    return len(hf)
