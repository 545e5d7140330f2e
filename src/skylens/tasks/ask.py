"""Ask a question about one image (``skylens ask``, ``POST /api/ask``) with whatever the model offers.

The answerers themselves (question kinds, zero-shot and trained heads) are model code:
``skylens.models.answerer``.
"""

from __future__ import annotations

import numpy as np

from skylens.errors import CapabilityError
from skylens.models.answerer import Answer, ZeroShotAnswerer, check_question
from skylens.models.base import Answerer, ImageTextEncoder


def ask_image(model, image: np.ndarray, question: str) -> Answer:
    """Answer ``question`` about ``image`` with whatever the model offers.

    An ``Answerer`` answers itself; a plain image-text encoder gets the zero-shot answerer; any
    other model is refused before work.
    """
    check_question(question)
    if isinstance(model, Answerer):
        try:
            return model.answer(image, question)
        except ImportError as exc:  # trained parts that load on first use are not installed
            raise CapabilityError(
                f"model '{model.name}' cannot answer questions in this install: {exc}"
            ) from exc
    if isinstance(model, ImageTextEncoder):
        return ZeroShotAnswerer(model).answer(image, question)
    raise CapabilityError(
        f"model '{model.name}' cannot answer questions about images; "
        "use the default model, an hf: vision-language model or a vision-capable openai: server"
    )
