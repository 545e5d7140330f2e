"""Ingest rasters into a chip index: read -> tile -> render -> embed (batched) -> append.

The pipeline is ``skylens.index.embed.embed_stream``, shared with change and localize: a reader
thread opens each file, tiles it with windowed reads, renders chips to RGB and preprocesses them;
the caller runs the model on full batches and appends rows. Decoding thus overlaps inference, the
model always sees full batches, and memory stays bounded by the queue, whatever the scene size.

With a captioner, each batch of chips is also captioned and the caption stored in the row (text
search can then match captions, ``ChipIndex.search_captions``). A captioner that fails or returns
something other than one string per chip never blocks or corrupts the index: the batch's rows are
stored without caption and the failure is counted in the report.

Re-running is safe: a chip's id is a hash of the source file's content digest, its window and the
model version, ids already in the index are skipped before any pixel is read, and rows are
appended in batches, so a killed ingest resumes where it stopped without duplicates.
"""

from __future__ import annotations

import re
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
from skylens.index.embed import BATCH, embed_stream
from skylens.index.repair import DamagedIndexError
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
    chips_captioned: int = 0  # new chips and stored uncaptioned ones that got a caption
    caption_failures: int = 0  # chips stored without caption because the captioner failed
    caption_error: str | None = None  # the first captioner failure, for the user

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


class ChipReader:
    """Yields ``(_Item, rgb)`` for the new chips of many files; runs in the reader thread.

    A file that cannot be read is recorded in ``report.failed`` and skipped.
    """

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
        captioned_only: bool = False,
    ) -> None:
        self.paths, self.index, self.model = paths, index, model
        self.size, self.overlap, self.bands_spec = size, overlap, bands
        self.report, self.on_skip = report, on_skip
        # with a captioner, stored chips without a caption are redone to fill it
        self.captioned_only = captioned_only

    def __iter__(self) -> Iterator[tuple[_Item, np.ndarray]]:
        for path in self.paths:
            try:
                yield from self._file(path)
            except DamagedIndexError:
                raise  # the index, not this file: no later file can be stored either
            except SkylensError as exc:
                self.report.failed.append({"path": str(path), "error": str(exc)})

    def read_part(
        self, path: Path, start: int, stop: int, digest: str
    ) -> Iterator[tuple[_Item, np.ndarray]]:
        """The new chips ``start:stop`` (in tiling order) of one file whose content digest is
        known: what a Ray reader task reads (``skylens.scale.ingest``). Failures go to the
        report as for whole files; the file is counted by the part that starts at chip 0."""
        try:
            yield from self._file(path, slice(start, stop), digest)
        except DamagedIndexError:
            raise
        except SkylensError as exc:
            self.report.failed.append({"path": str(path), "error": str(exc)})

    def _file(
        self, path: Path, part: slice = slice(None), digest: str | None = None
    ) -> Iterator[tuple[_Item, np.ndarray]]:
        digest = digest or file_digest(path)
        with read_raster(path) as raster:
            bands = parse_bands(self.bands_spec, raster.count, path, raster.band_names)
            band_key = ",".join(map(str, bands))
            acquired = acquisition_time(path, getattr(raster, "tags", None))
            chips = list(tile(raster, self.size, self.overlap))[part]
            ids = [
                ChipIndex.chip_id(digest, c.window, self.model.version + "|" + band_key)
                for c in chips
            ]
            existing = self.index.existing_ids(ids, captioned_only=self.captioned_only)
            self.report.files += int(not part.start)
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
                yield _Item(chip, chip_id, digest, acquired, band_key), rgb


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
    batch_size: int = BATCH,
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
        captioner: optional model with ``caption_images``; its captions are stored per chip,
            chips already stored without a caption get one, and the caption full-text index is
            built. A failing captioner leaves the chips uncaptioned (``report.caption_failures``)
            and never fails the ingest.
    """
    import time

    t0 = time.perf_counter()
    report = IngestReport()
    files = [
        p.resolve() for p in iter_image_files([Path(p) for p in paths])
    ]  # cwd-independent rows
    tick = progress or (lambda n: None)
    captioning = captioner is not None
    reader = ChipReader(
        files,
        index,
        model,
        size=size,
        overlap=overlap,
        bands=bands,
        report=report,
        on_skip=tick,
        captioned_only=captioning,
    )
    rows: list[dict] = []
    for batch in embed_stream(
        model,
        reader,
        batch_size=batch_size,
        keep_images=captioner is not None,
        thread_name="skylens-ingest-reader",
    ):
        captions = (
            _captions(captioner, batch.images, report)
            if captioner is not None
            else [None] * len(batch.payloads)
        )
        for it, vec, cap in zip(batch.payloads, batch.vectors, captions, strict=True):
            rows.append(chip_row(it, vec, cap, model))
        tick(len(batch.payloads))
        if len(rows) >= write_every:
            report.chips_added += index.add(rows, fill_captions=captioning)
            rows = []
    if rows:
        report.chips_added += index.add(rows, fill_captions=captioning)
    if report.chips_captioned:
        index.build_caption_index()  # no-op when it exists: new rows are searched unindexed
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def check_captioner(model):
    """``model`` if it can caption chips now, else a clear error before any chip is written.

    Captions one small grey image, so a captioner whose weights are missing fails here, with
    its own message, instead of leaving a whole ingest uncaptioned.

    Raises:
        CapabilityError: the model is not a ``Captioner``.
        ModelError: captioning fails.
    """
    from skylens.errors import ModelError
    from skylens.models.base import Captioner

    if hasattr(model, "require"):
        model.require(Captioner)
    try:
        probe = model.caption_images([np.full((64, 64, 3), 128, np.uint8)])
    except SkylensError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend's own failure, named for the user
        raise ModelError(f"model '{getattr(model, 'name', model)}' cannot caption: {exc}") from None
    if not isinstance(probe, (list, tuple)) or len(probe) != 1:
        raise ModelError(
            f"model '{getattr(model, 'name', model)}' returned {probe!r} for one image; "
            "expected a list of one caption"
        )
    return model


def _captions(captioner, images: list[np.ndarray], report: IngestReport) -> list[str | None]:
    """One caption (or None) per chip; a failing captioner never stops or corrupts the ingest."""
    try:
        caps = captioner.caption_images(images)
        if not isinstance(caps, (list, tuple)) or len(caps) != len(images):
            raise ValueError(
                f"returned {type(caps).__name__} of {len(caps) if hasattr(caps, '__len__') else '?'}"
                f" items for {len(images)} chips"
            )
        caps = [c.strip() if isinstance(c, str) and c.strip() else None for c in caps]
    except Exception as exc:  # noqa: BLE001 - any captioner failure: store the chips uncaptioned
        report.caption_failures += len(images)
        if report.caption_error is None:
            name = getattr(captioner, "name", type(captioner).__name__)
            report.caption_error = f"captioner '{name}' failed: {exc}"
        return [None] * len(images)
    report.chips_captioned += sum(c is not None for c in caps)
    return caps


def chip_row(it: _Item, vector: np.ndarray, caption: str | None, model: ImageTextEncoder) -> dict:
    """The index row of one embedded chip (``ChipIndex.add``'s row format)."""
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
