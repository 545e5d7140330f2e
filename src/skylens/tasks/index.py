"""Build and inspect a chip index (``skylens index``, ``skylens info``): the ingest orchestration.

``index_images`` is everything a face did around ``skylens.index.ingest.ingest``: load the model
(and the captioner), check the options, open or create the index, count the chips for the
progress bar, ingest, build the ANN index, and return one ``IndexReport`` with honest counts and
rates; storage failures on a damaged index become one ``IndexDamagedError``
(``skylens.tasks.search.reading``), so no face needs to import ``skylens.index``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skylens.errors import InputError

MAX_TILE = 8192  # pixels; one chip larger than this is a mistake, not a request
MAX_BATCH = 4096  # chips per forward pass


@dataclass
class IndexReport:
    """What ``index_images`` did; ``to_dict`` is the JSON the faces print."""

    index: str
    model: str
    files_found: int = 0  # image files the paths expanded to
    files_indexed: int = 0  # of which read and tiled without error
    chips_added: int = 0
    chips_present: int = 0  # already in the index (skipped before any pixel was read)
    chips_nodata: int = 0  # all-nodata chips, skipped
    chips_embedded: int = 0  # chips that went through the model (new, or re-captioned)
    chips_captioned: int = 0
    caption_model: str | None = None
    caption_failures: int = 0
    caption_error: str | None = None
    failed: list[dict] = field(default_factory=list)  # {"path", "error"}
    rows: int = 0  # rows the index holds afterwards
    ann_built: bool = False
    seconds: float = 0.0

    @property
    def chips_per_s(self) -> float | None:
        """Chips through the model per second of ingest; None when none went through."""
        if not self.chips_embedded or self.seconds <= 0:
            return None
        return self.chips_embedded / self.seconds

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["chips_per_s"] = self.chips_per_s
        return data


def check_index_options(tile: int, overlap: int, batch: int) -> None:
    """``InputError`` unless 1 <= tile <= MAX_TILE, 0 <= overlap < tile, 1 <= batch <= MAX_BATCH."""
    if not 1 <= tile <= MAX_TILE:
        raise InputError(f"--tile must be 1..{MAX_TILE} pixels, got {tile}")
    if not 0 <= overlap < tile:
        raise InputError(
            f"--overlap must be 0..{tile - 1} pixels (less than --tile), got {overlap}"
        )
    if not 1 <= batch <= MAX_BATCH:
        raise InputError(f"--batch must be 1..{MAX_BATCH} chips, got {batch}")


def _check_index_folder(directory: Path) -> None:
    """``InputError`` when the index folder cannot be one (a file, or under a file)."""
    for p in (directory, *directory.parents):
        try:
            if p.exists():
                if not p.is_dir():
                    what = "is a file" if p == directory else f"is under the file {p}"
                    raise InputError(f"{directory}: {what}; --index must name a folder")
                return
        except OSError as exc:
            raise InputError(
                f"{directory}: cannot be used as an index folder ({exc.strerror})"
            ) from None


def _chips_embedded(run, *, captioning: bool) -> int:
    """Chips that went through the model: new rows, plus, with a captioner, stored rows that
    were re-embedded to get their caption (every chip a captioner saw was embedded)."""
    if not captioning:
        return run.chips_added
    return max(run.chips_added, run.chips_captioned + run.caption_failures)


def index_images(
    paths: Sequence[str | Path],
    directory: str | Path,
    *,
    model: str = "default",
    tile: int = 256,
    overlap: int = 32,
    bands: str | None = None,
    batch: int = 64,
    ann: bool = True,
    caption_model: str | None = None,
    caption: bool = False,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    runner: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> IndexReport:
    """Tile, embed (and caption) the images under ``paths`` into the index at ``directory``.

    Safe to re-run: chips already present are skipped, so a killed run resumes.

    Args:
        paths: image files and folders (folders are searched recursively).
        directory: index folder, created when absent.
        model: embedding model name.
        tile, overlap: chip side and overlap in pixels.
        bands: 1-based bands rendered as RGB (``"4,3,2"``).
        batch: chips per forward pass.
        ann: build the ANN index when the table is large enough.
        caption: caption every chip with ``model``; ``caption_model`` captions with another one.
        on_total: called once with the number of chips to do (for a progress bar).
        progress: called with the number of chips done as work advances.
        runner: ``"local"`` (this process) or ``"ray"`` (``skylens.scale.ingest_ray``: Ray Data,
            ``workers`` embedders, a local Ray unless ``address`` names a cluster).

    Raises:
        InputError: bad options, ``paths`` hold no image, or ``directory`` cannot be an index.
        IndexMismatchError: the index was built with another model.
        IndexDamagedError: the index exists but cannot be read.
    """
    from skylens.imagery import list_image_files
    from skylens.index.ingest import check_captioner, count_chips, ingest
    from skylens.index.store import ChipIndex
    from skylens.models import load
    from skylens.tasks.search import reading

    check_index_options(tile, overlap, batch)
    directory = Path(directory)
    _check_index_folder(directory)
    files = list_image_files(paths)
    enc = load(model)
    captioner = None
    if caption or caption_model:
        captioner = check_captioner(load(caption_model) if caption_model else enc)
    with reading(directory):
        idx = ChipIndex.create_or_open(
            directory, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
        )
        if on_total is not None:
            on_total(count_chips(files, tile, overlap))
        common = {"size": tile, "overlap": overlap, "bands": bands, "batch_size": batch}
        if runner == "ray":
            from skylens.scale import ingest_ray

            if captioner is not None:
                raise InputError("--caption runs in one process for now: drop --ray or --caption")
            run = ingest_ray(
                files, idx, enc, workers=workers, address=address, progress=progress, **common
            )
        else:
            run = ingest(files, idx, enc, progress=progress, captioner=captioner, **common)
        built = bool(idx.build_ann()) if ann else False
        rows = idx.count()
    failed_paths = {f["path"] for f in run.failed}
    return IndexReport(
        index=str(directory),
        model=enc.name,
        files_found=len(files),
        files_indexed=len(files) - len(failed_paths),
        chips_added=run.chips_added,
        chips_present=run.chips_skipped_existing,
        chips_nodata=run.chips_skipped_nodata,
        chips_embedded=_chips_embedded(run, captioning=captioner is not None),
        chips_captioned=run.chips_captioned,
        caption_model=getattr(captioner, "name", None),
        caption_failures=run.caption_failures,
        caption_error=run.caption_error,
        failed=list(run.failed),
        rows=rows,
        ann_built=built,
        seconds=run.seconds,
    )
