"""Ingest on Ray Data: files -> reader tasks -> an actor pool of embedders -> ONE writer.

The same work as ``skylens.index.ingest.ingest``, spread over processes or machines:

* **dataset**: one row per raster file;
* **planner** (Ray tasks): splits each file into parts of ``PART_CHIPS`` chips (header + digest);
* **reader** (Ray tasks, ``flat_map``): reads one part with windowed reads, skips chips whose id
  the index already holds (``ChipIndex.existing_ids``; read-only, any number of readers) and
  emits one row per new chip: its metadata and RGB pixels (``index.ingest.ChipReader``, the
  single-process reader, so both paths tile and name chips identically);
* **mapper** (``ActorPoolStrategy``: ``workers`` actors): each actor loads the model once and
  embeds batches of ``batch_size`` chips through ``index.embed.embed_images`` (the one batched
  embedding path);
* **writer**: this process appends the rows with ``ChipIndex.add`` (``merge_insert`` on the chip
  id). Chip ids hash the file's content, the window and the model version, exactly as in
  ``index.ingest``, so a rerun or a job killed half-way adds no duplicate and the rows equal the
  single-process path's.

On a cluster the index folder must be on a filesystem every node mounts at the same path (NFS,
a parallel filesystem): readers open it to skip stored chips, and the one writer runs where this
function is called. See ``docs/readme/scale.md``.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from skylens.errors import InputError, SkylensError
from skylens.imagery import file_digest, iter_image_files, read_raster, tile
from skylens.index.embed import BATCH, embed_images
from skylens.index.ingest import ChipReader, IngestReport, chip_row
from skylens.index.store import ChipIndex
from skylens.models.base import ImageTextEncoder
from skylens.scale.runtime import ray_session

READER_CPUS = 0.25  # Ray CPUs a reader task reserves: decoding overlaps the embedders
PART_CHIPS = 64  # chips a reader task reads: a scene's first chips are embedded while it reads on


def ingest_ray(
    paths: Sequence[str | Path],
    index: ChipIndex,
    model: ImageTextEncoder,
    *,
    size: int = 256,
    overlap: int = 32,
    bands: str | Sequence[int] | None = None,
    batch_size: int = BATCH,
    write_every: int = 512,
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Tile, embed and append every raster under ``paths`` on Ray; returns an ``IngestReport``.

    Args:
        paths, index, model, size, overlap, bands, batch_size, write_every, progress: as for
            ``skylens.index.ingest.ingest`` (``model`` is the driver's copy: it names the
            model the workers load, ``skylens.load(model.name)``, unless it pickles, as a
            small test model does).
        workers: embedding actors (default: the local Ray's CPUs, i.e. every core).
        address: a Ray cluster's address; None runs a local Ray with ``workers`` CPUs.

    Raises:
        ScaleError: Ray is not installed.
        InputError: ``workers`` below 1.
    """
    if workers is not None and int(workers) < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    t0 = time.perf_counter()
    report = IngestReport()
    files = [str(p.resolve()) for p in iter_image_files([Path(p) for p in paths])]
    tick = progress or (lambda n: None)
    with ray_session(address, num_cpus=workers) as ray:
        cpus = ray.cluster_resources().get("CPU", 1)
        pool = int(workers or cpus)
        reader = {
            "index_dir": str(index.directory),
            "version": model.version,
            "size": size,
            "overlap": overlap,
            "bands": bands,
        }
        ds = ray.data.from_items(
            [{"path": f} for f in files], override_num_blocks=max(1, min(len(files), 16 * pool))
        )
        ds.context.execution_options.preserve_order = True
        tiling = {"size": size, "overlap": overlap, "group": PART_CHIPS}
        ds = ds.flat_map(plan_file_parts, fn_kwargs=tiling, num_cpus=READER_CPUS)
        ds = ds.flat_map(read_part_chips, fn_kwargs=reader, num_cpus=READER_CPUS)
        ds = ds.map_batches(
            ChipEmbedder,
            fn_constructor_kwargs={"model": _model_spec(model), "threads": _threads(cpus, pool)},
            batch_size=int(batch_size),
            batch_format="numpy",
            concurrency=pool,
            num_cpus=max(0.1, (cpus - READER_CPUS) / pool) if not address else 1,
        )
        rows: list[dict] = []
        for batch in ds.iter_batches(batch_size=int(batch_size), batch_format="numpy"):
            embedded = 0
            for meta, vec in zip(batch["meta"], batch["vector"], strict=True):
                item = pickle.loads(meta)
                if isinstance(item, IngestReport):
                    _merge(report, item)
                    tick(item.chips_skipped_existing + item.chips_skipped_nodata)
                    continue
                rows.append(chip_row(item, vec, None, model))
                embedded += 1
            tick(embedded)
            if len(rows) >= write_every:
                report.chips_added += index.add(rows)
                rows = []
        if rows:
            report.chips_added += index.add(rows)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


class _VersionOnly:
    """What ``ChipReader`` needs of a model in a reader task: the version that keys chip ids."""

    def __init__(self, version: str) -> None:
        self.version = version


def plan_file_parts(row: dict, *, size: int, overlap: int, group: int) -> list[dict]:
    """Planning stage: a file as parts of ``group`` consecutive chips (its header only, plus one
    read for the content digest), so a big scene is read by several tasks and its first chips
    reach the embedders while the rest is still being read."""
    path = Path(row["path"])
    try:
        digest = file_digest(path)
        with read_raster(path) as raster:
            n = sum(1 for _ in tile(raster, size, overlap))
    except SkylensError:  # the reader reports it, with the single-process path's message
        return [{"path": row["path"], "digest": "", "start": 0, "stop": 0}]
    starts = range(0, n, group) or [0]
    return [
        {"path": row["path"], "digest": digest, "start": s, "stop": min(s + group, n)}
        for s in starts
    ]


def read_part_chips(row: dict, *, index_dir: str, version: str, size, overlap, bands) -> list[dict]:
    """Reader stage: the new chips of one part of a file as rows ``{"meta", "rgb"}`` (pickled),
    then one row whose meta is the part's ``IngestReport`` (counts, failures)."""
    report = IngestReport()
    reader = ChipReader(
        [Path(row["path"])],
        ChipIndex.open(index_dir),
        _VersionOnly(version),
        size=size,
        overlap=overlap,
        bands=bands,
        report=report,
    )
    if row["digest"]:
        parts = reader.read_part(Path(row["path"]), row["start"], row["stop"], row["digest"])
    else:  # planning could not read it: read it whole, which records the failure
        parts = iter(reader)
    out = [{"meta": pickle.dumps(item), "rgb": pickle.dumps(rgb)} for item, rgb in parts]
    out.append({"meta": pickle.dumps(report), "rgb": b""})
    return out


class ChipEmbedder:
    """Mapper stage (one per Ray actor): loads the model once, embeds batches of chips.

    Args:
        model: a model name for ``skylens.load``, or a pickled model.
        threads: CPU threads for this actor's model (``SKYLENS_THREADS``).
    """

    def __init__(self, model: str | bytes, threads: int) -> None:
        os.environ["SKYLENS_THREADS"] = str(threads)
        if isinstance(model, bytes):
            self.model = pickle.loads(model)
        else:
            import skylens

            self.model = skylens.load(model)

    def __call__(self, batch: dict) -> dict:
        rgb = batch["rgb"]
        chips = [i for i, b in enumerate(rgb) if len(b)]
        vectors = np.zeros((len(rgb), self.model.embed_dim), np.float32)
        if chips:
            vectors[chips] = embed_images(self.model, [pickle.loads(rgb[i]) for i in chips])
        return {"meta": batch["meta"], "vector": vectors}


def _model_spec(model: ImageTextEncoder) -> str | bytes:
    """The model pickled when it pickles (small models, tests), else its registry name."""
    try:
        return pickle.dumps(model)
    except Exception:  # noqa: BLE001 - onnxruntime sessions and the like do not pickle
        return model.name


def _threads(cpus: float, pool: int) -> int:
    return max(1, int(cpus // pool))


def _merge(total: IngestReport, part: IngestReport) -> None:
    total.files += part.files
    total.chips_seen += part.chips_seen
    total.chips_skipped_existing += part.chips_skipped_existing
    total.chips_skipped_nodata += part.chips_skipped_nodata
    total.failed += part.failed
