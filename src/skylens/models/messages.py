"""Chat messages as the language backends (``hf:``, ``openai:``, ``gguf:``) take them.

A message is ``{"role": "system" | "user" | "assistant", "content": CONTENT}``, where CONTENT is a
string or a list of parts, each ``{"type": "text", "text": str}`` or ``{"type": "image", "image":
ARRAY}`` with ARRAY an RGB uint8 image (HxWx3, any size). Every backend checks messages with
:func:`normalize_messages` before it does any work, so a bad message fails the same way everywhere,
with its position named.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skylens.errors import CapabilityError, InputError
from skylens.imagery import render

ROLES = ("system", "user", "assistant")

#: The instruction a chat model gets for ``caption_images`` (one image, one sentence).
CAPTION_PROMPT = "Describe this aerial or satellite image in one sentence."
#: Appended to a question for ``answer``: remote-sensing VQA answers are a word or a short phrase.
ANSWER_SUFFIX = " Answer with a single word or a short phrase."


def check_image(image: object, where: str = "image") -> np.ndarray:
    """``image`` as an HxWx3 uint8 array, or ``InputError`` naming ``where``."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise InputError(
            f"{where}: expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype} "
            "(render rasters with skylens.imagery.to_rgb first)"
        )
    return arr


def normalize_messages(messages: Sequence[dict]) -> list[dict]:
    """Check ``messages`` and return them with every content as a list of parts.

    Raises:
        InputError: no messages, an unknown role, or a part that is neither text nor an image.
    """
    if isinstance(messages, (str, bytes)) or not messages:
        raise InputError(
            'messages: expected a non-empty list of {"role": ..., "content": ...} dicts'
        )
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES or "content" not in msg:
            raise InputError(
                f"messages[{i}]: expected {{'role': one of {ROLES}, 'content': ...}}, got {msg!r:.80}"
            )
        content = msg["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, (list, tuple)):
            parts = []
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image" and "image" in part:
                    where = f"messages[{i}].content[{j}]"
                    parts.append({"type": "image", "image": check_image(part["image"], where)})
                else:
                    raise InputError(
                        f"messages[{i}].content[{j}]: expected {{'type': 'text', 'text': str}} or "
                        f"{{'type': 'image', 'image': HxWx3 uint8 array}}, got {part!r:.80}"
                    )
        else:
            raise InputError(
                f"messages[{i}].content: expected a string or a list of parts, got {type(content).__name__}"
            )
        out.append({"role": msg["role"], "content": parts})
    return out


def images_of(messages: Sequence[dict]) -> list[np.ndarray]:
    """The images of normalised ``messages``, in order."""
    return [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]


def text_of(message: dict) -> str:
    """The text parts of one normalised message, joined."""
    return "".join(p["text"] for p in message["content"] if p["type"] == "text")


def text_only(messages: Sequence[dict], model_name: str) -> list[dict]:
    """Normalised ``messages`` as ``{"role", "content": str}``; ``CapabilityError`` if any holds an image."""
    if images_of(messages):
        raise CapabilityError(
            f"model '{model_name}' is a text-only language model and cannot look at images; "
            "use a vision-language model (hf:, or an openai: server with a vision model)"
        )
    return [{"role": m["role"], "content": text_of(m)} for m in messages]


def image_message(image: np.ndarray, text: str) -> list[dict]:
    """One user turn holding ``image`` then ``text``."""
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": text}],
        }
    ]


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an RGB uint8 array (lossless, so a server sees exactly these pixels)."""
    return render.png_bytes(check_image(image))


def png_data_url(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` URL of an RGB uint8 array (the OpenAI ``image_url`` form)."""
    return render.png_data_url(check_image(image))


def answer_from_reply(question: str, reply: str, model_name: str):
    """A generated ``reply`` to ``question`` as a ``skylens.models.answerer.Answer``.

    The kind comes from ``question_kind``; an empty reply is reported as unanswered, never as "".
    """
    from skylens.models.answerer import Answer, question_kind

    kind = question_kind(question)
    if not reply.strip():
        return Answer(
            question,
            kind,
            "cannot answer with this model",
            supported=False,
            reason=f"{model_name} returned an empty reply",
        )
    return Answer(
        question, kind, reply.strip(), reason=f"generated by {model_name} (not calibrated)"
    )
