"""Caption images in words (``/api/caption``; the CLI's caption loop joins it here).

NOTE for the merge: the faces-cli branch adds the full module (``caption_files``, ``CaptionRow``);
this holds only ``caption_arrays`` with the same signature, which the service calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skylens.errors import CapabilityError, InputError

BATCH = 16  # images captioned together (one tower pass)
MAX_TOKENS_LIMIT = 200  # words; a caption is a sentence, not an essay


def captioner_for(model):
    """``model`` loaded by name if it is a string, checked to be a ``Captioner``."""
    from skylens.models.base import Captioner, load

    captioner = load(model) if isinstance(model, str) else model
    captioner.require(Captioner)
    return captioner


def caption_arrays(
    model, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
) -> list[str]:
    """One caption per RGB uint8 array, in batches of ``BATCH``.

    Raises:
        CapabilityError: the model cannot caption, or its captioning parts are not installed.
        InputError: beam or max_tokens out of range.
    """
    if beam < 1 or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InputError(f"beam must be >= 1 and max_tokens 1..{MAX_TOKENS_LIMIT}")
    captioner = captioner_for(model)
    captions: list[str] = []
    try:
        for start in range(0, len(images), BATCH):
            part = list(images[start : start + BATCH])
            captions += captioner.caption_images(part, beam=beam, max_tokens=max_tokens)
    except ImportError as exc:  # trained parts that load on first use are missing
        raise CapabilityError(
            f"model '{captioner.name}' cannot do captioning in this install: {exc}"
        ) from exc
    return captions
