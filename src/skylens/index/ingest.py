"""Ingest rasters into a chip index: read -> tile -> render -> embed (batched) -> append.

The pipeline is a reader thread and the calling thread: the reader opens each file, tiles it with
windowed reads, renders chips to RGB and preprocesses them into model-ready batches; the caller
runs the model on full batches and appends rows. Decoding thus overlaps inference, the model always
sees full batches, and memory stays bounded by the queue, whatever the scene size.

Re-running is safe: a chip's id is a hash of the source file's content digest, its window and the
model version, ids already in the index are skipped before any pixel is read, and rows are
appended in batches, so a killed ingest resumes where it stopped without duplicates.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from skylens.errors import SkylensError
from skylens.imagery import (
    Chip,
    file_digest,
    iter_image_files,
    parse_bands,
    read_chip,
    read_raster,
    tile,
)
from skylens.index.store import ChipIndex
from skylens.models.base import ImageTextEncoder

_DATE_IN_NAME = re.compile(
    r"(?<!\d)(19\d{2}|20\d{2})[-_]?(0[1-9]|1[0-2])[-_]?(0[1-9]|[12]\d|3[01])(?!\d)"
)


@dataclass
class IngestReport:
    """What an ingest did; serialises to JSON for the CLI and the service."""

    files: int = 0
    chips_seen: int = 0
    chips_added: int = 0
    chips_skipped_existing: int = 0
    chips_skipped_nodata: int = 0
    failed: list[dict] = field(default_factory=list)  # {"path": ..., "error": ...}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def acquisition_time(path: Path, tags: dict | None = None) -> datetime | None:
    """Acquisition time from a TIFF DateTime tag, else a YYYYMMDD date in the file name."""
    stamp = (tags or {}).get("TIFFTAG_DATETIME")
    if stamp:
        try:
            return datetime.strptime(stamp.strip(), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            pass
    m = _DATE_IN_NAME.search(path.stem)
    if m:
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return None
    return None


@dataclass
class _Item:
    chip: Chip
    chip_id: str
    digest: str
    acquired: datetime | None
    bands: str
    pixels: np.ndarray  # preprocessed (C,H,W) float32 or RGB uint8, see ChipReader.prepare


class ChipReader:
    """Yields model-ready chips of many files; runs in the reader thread."""

    def __init__(
        self,
        paths: Sequence[Path],
        index: ChipIndex,
        model: ImageTextEncoder,
        *,
        size: int,
        overlap: int,
        bands: str | Sequence[int] | None,
        report: IngestReport,
        on_skip: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.paths, self.index, self.model = paths, index, model
        self.size, self.overlap, self.bands_spec = size, overlap, bands
        self.report, self.on_skip = report, on_skip
        # models that expose preprocess() get it run here, off the inference thread
        self.prepare = getattr(model, "preprocess", None)

    def __iter__(self) -> Iterator[_Item | tuple[str, Exception]]:
        for path in self.paths:
            try:
                yield from self._file(path)
            except SkylensError as exc:
                yield (str(path), exc)

    def _file(self, path: Path) -> Iterator[_Item]:
        digest = file_digest(path)
        with read_raster(path) as raster:
            bands = parse_bands(self.bands_spec, raster.count, path, raster.band_names)
            band_key = ",".join(map(str, bands))
            acquired = acquisition_time(path, getattr(raster, "tags", None))
            chips = list(tile(raster, self.size, self.overlap))
            ids = [
                ChipIndex.chip_id(digest, c.window, self.model.version + "|" + band_key)
                for c in chips
            ]
            existing = self.index.existing_ids(ids)
            self.report.files += 1
            self.report.chips_seen += len(chips)
            self.report.chips_skipped_existing += len(existing)
            if existing:
                self.on_skip(len(existing))
            for chip, chip_id in zip(chips, ids, strict=True):
                if chip_id in existing:
                    continue
                rgb, _valid = read_chip(raster, chip, bands=bands)
                if rgb is None:
                    self.report.chips_skipped_nodata += 1
                    self.on_skip(1)
                    continue
                pixels = self.prepare([rgb])[0] if self.prepare else rgb
                yield _Item(chip, chip_id, digest, acquired, band_key, pixels)


def count_chips(paths: Sequence[Path], size: int, overlap: int) -> int:
    """Number of chips the paths tile into (headers only; unreadable files count 0)."""
    total = 0
    for path in paths:
        try:
            with read_raster(path) as raster:
                total += sum(1 for _ in tile(raster, size, overlap))
        except SkylensError:
            pass
    return total


def ingest(
    paths: Sequence[str | Path],
    index: ChipIndex,
    model: ImageTextEncoder,
    *,
    size: int = 256,
    overlap: int = 32,
    bands: str | Sequence[int] | None = None,
    batch_size: int = 64,
    write_every: int = 512,
    progress: Callable[[int], None] | None = None,
    captioner=None,
) -> IngestReport:
    """Tile, embed and append every raster under ``paths``; returns an ``IngestReport``.

    Args:
        paths: files and folders (folders are searched recursively for rasters).
        index: an index opened for ``model`` (``ChipIndex.create_or_open``).
        size, overlap: chip side and overlap in pixels.
        bands: 1-based band indices rendered as RGB (``"4,3,2"``); default 1,2,3.
        batch_size: chips per forward pass.
        write_every: rows buffered before an append (one LanceDB version each).
        progress: called with the number of chips done (embedded or skipped) as work advances.
        captioner: optional model with ``caption_images``; its captions are stored per chip.
    """
    import time

    t0 = time.perf_counter()
    report = IngestReport()
    files = [
        p.resolve() for p in iter_image_files([Path(p) for p in paths])
    ]  # cwd-independent rows
    tick = progress or (lambda n: None)
    reader = ChipReader(
        files, index, model, size=size, overlap=overlap, bands=bands, report=report, on_skip=tick
    )
    q: queue.Queue = queue.Queue(maxsize=batch_size * 4)
    done = object()

    def produce() -> None:
        try:
            for item in reader:
                q.put(item)
        except BaseException as exc:  # noqa: BLE001 - surfaced in the consumer
            q.put(("<reader>", exc))
        finally:
            q.put(done)

    thread = threading.Thread(target=produce, name="skylens-ingest-reader", daemon=True)
    thread.start()
    batch: list[_Item] = []
    rows: list[dict] = []

    def embed(items: list[_Item]) -> None:
        if not items:
            return
        if reader.prepare is not None and hasattr(model, "encode_pixels"):
            vectors = model.encode_pixels(np.stack([it.pixels for it in items]))
        else:
            vectors = model.encode_images([it.pixels for it in items])
        captions = (
            captioner.caption_images([it.pixels for it in items])
            if captioner
            else [None] * len(items)
        )
        for it, vec, cap in zip(items, vectors, captions, strict=True):
            rows.append(_row(it, vec, cap, model))
        tick(len(items))

    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, tuple):
                path, exc = item
                if path == "<reader>":
                    raise exc
                report.failed.append({"path": path, "error": str(exc)})
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                embed(batch)
                batch = []
                if len(rows) >= write_every:
                    report.chips_added += index.add(rows)
                    rows = []
        embed(batch)
        if rows:
            report.chips_added += index.add(rows)
    finally:
        thread.join(timeout=5)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _row(it: _Item, vector: np.ndarray, caption: str | None, model: ImageTextEncoder) -> dict:
    c = it.chip
    return {
        "id": it.chip_id,
        "path": c.source,
        "window": list(c.window),
        "bounds": list(c.bounds) if c.bounds else None,
        "crs": c.crs,
        "footprint": c.footprint,
        "acquired": it.acquired,
        "bands": it.bands,
        "source_digest": it.digest,
        "caption": caption,
        "model_name": model.name,
        "model_version": model.version,
        "vector": np.asarray(vector, np.float32),
    }
