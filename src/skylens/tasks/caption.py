"""Caption images in words (``skylens caption``, ``/api/caption``, the demo): the one caption loop.

Images are read one by one (``load_scene_rgb``: decimated whole-scene views), grouped into
batches and captioned with one ``Captioner.caption_images`` call per batch, so a model with a
batched decoder (the default's beam search runs the image tower once per batch) sees full
batches. A file that cannot be read gets an error in its row and never loses the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skylens.errors import CapabilityError, InputError, SkylensError

BATCH = 16  # images captioned together (one tower pass)
MAX_TOKENS_LIMIT = 200  # words; a caption is a sentence, not an essay


@dataclass
class CaptionRow:
    """One image's caption, or why it has none."""

    source: str
    caption: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "caption": self.caption, "error": self.error}


def check_caption_options(beam: int, max_tokens: int) -> None:
    """``InputError`` unless 1 <= ``beam`` and 1 <= ``max_tokens`` <= ``MAX_TOKENS_LIMIT``."""
    if beam < 1:
        raise InputError(f"--beam must be at least 1, got {beam}")
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InputError(f"--max-tokens must be 1..{MAX_TOKENS_LIMIT}, got {max_tokens}")


def captioner_for(model):
    """``model`` loaded by name if it is a string, checked to be a ``Captioner``."""
    from skylens.models.base import Captioner, load

    captioner = load(model) if isinstance(model, str) else model
    captioner.require(Captioner)
    return captioner


def _caption_batch(captioner, images: list[np.ndarray], beam: int, max_tokens: int) -> list[str]:
    try:
        return captioner.caption_images(images, beam=beam, max_tokens=max_tokens)
    except ImportError as exc:  # trained parts that load on first use are missing
        raise CapabilityError(
            f"model '{captioner.name}' cannot do captioning in this install: {exc}"
        ) from exc


def caption_arrays(
    model, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
) -> list[str]:
    """One caption per RGB uint8 array, in batches of ``BATCH``.

    Raises:
        CapabilityError: the model cannot caption, or its captioning parts are not installed.
        InputError: beam or max_tokens out of range.
    """
    check_caption_options(beam, max_tokens)
    captioner = captioner_for(model)
    captions: list[str] = []
    for start in range(0, len(images), BATCH):
        part = list(images[start : start + BATCH])
        captions += _caption_batch(captioner, part, beam, max_tokens)
    return captions


def caption_files(
    model,
    paths: Sequence[str | Path],
    *,
    beam: int = 3,
    max_tokens: int = 40,
    bands: str | None = None,
    batch_size: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[CaptionRow]:
    """Caption every image in ``paths`` (files and folders), one row per file, in order.

    Args:
        model: a ``Captioner`` or a model name.
        beam: beam width (1 = greedy).
        max_tokens: most words in a caption.
        bands: 1-based bands rendered as RGB (``"4,3,2"``).
        batch_size: images per ``caption_images`` call.
        progress: called with the number of images done as work advances.

    Raises:
        InputError: bad options, or ``paths`` hold no image.
    """
    from skylens.imagery import iter_image_files
    from skylens.tasks.common import load_scene_rgb

    check_caption_options(beam, max_tokens)
    captioner = captioner_for(model)
    files = list(iter_image_files([Path(p) for p in paths]))
    if not files:
        raise InputError(f"no images found in {', '.join(str(p) for p in paths)}")
    tick = progress or (lambda n: None)
    rows: list[CaptionRow] = []
    pending: list[tuple[CaptionRow, np.ndarray]] = []

    def flush() -> None:
        captions = _caption_batch(captioner, [pixels for _, pixels in pending], beam, max_tokens)
        for (row, _), caption in zip(pending, captions, strict=True):
            row.caption = caption
        tick(len(pending))
        pending.clear()

    for path in files:
        row = CaptionRow(str(path))
        rows.append(row)
        try:
            pending.append((row, load_scene_rgb(path, bands=bands)))
        except SkylensError as exc:  # one unreadable image must not lose the others
            row.error = str(exc)
            tick(1)
            continue
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return rows
