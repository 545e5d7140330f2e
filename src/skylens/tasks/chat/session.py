"""A multi-turn conversation over images, an index and a knowledge base (``skylens chat``).

SkyEyeGPT (Zhan et al., "SkyEyeGPT: Unifying Remote Sensing Vision-Language Tasks via
Instruction Tuning with Large Language Model", 2024) puts captioning, VQA and grounding in one
instruction-following dialogue; GeoPix (Ou et al., 2025) answers "show me X" with a mask. Here
the dialogue is a thin layer over the skylens tasks: the router picks an expert per turn, the
session keeps the images, the previous answers and the *referent* (the last object talked
about), so "how many are there?" after "find the ships" asks about ships. A turn that refers to
nothing said before gets an honest "I cannot answer that" and what to say instead.

Each turn is a :class:`TurnResult` whose ``to_dict`` is the JSON object the CLI prints per turn.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import InputError, SkylensError
from skylens.imagery import read_raster
from skylens.knowledge.store import KnowledgeBase
from skylens.models.answerer import MAX_QUESTION_CHARS, question_object
from skylens.models.base import ImageTextEncoder, TextGenerator, load
from skylens.tasks.chat import experts
from skylens.tasks.chat.router import Route, Router
from skylens.tasks.common import load_scene_rgb

PRONOUNS = {"it", "they", "them", "those", "these", "there", "that", "this", "ones", "one"}
#: first words of what ``question_object`` returns for "how many are there?" (no object)
NOT_OBJECTS = PRONOUNS | {"are", "is", "do", "can"}
_REFERS = re.compile(
    r"\b(they|them|those|these|it|ones)\b|\bare there\b\s*\??$|^\s*how many (are|is) there", re.I
)
_ABOUT_IMAGE = re.compile(r"\b(this|here|the image|the picture|the photo|shown|visible|this place|this area)\b", re.I)  # fmt: skip
_LEAD = re.compile(r"^\s*(please\s+)?(can you\s+|could you\s+)?(show( me)?|highlight|mark|outline|locate|point( out)?|draw|segment|find|circle|search( the)?( index| archive)?( for)?|where (exactly )?(is|are))\s+(all\s+)?(the\s+|an?\s+|any\s+|some\s+)?", re.I)  # fmt: skip


@dataclass
class TurnResult:
    """One turn's reply: the JSON object ``skylens chat --format json`` prints per turn."""

    turn: int
    text: str
    expert: str
    answer: str
    confidence: float
    supported: bool
    route: dict
    resolved: str  # the turn as the expert saw it (referents filled in)
    evidence: dict = field(default_factory=dict)
    citations: list[dict] = field(default_factory=list)
    geometry: dict | None = None
    latency_ms: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["confidence"] = round(float(self.confidence), 4)
        d["latency_ms"] = round(self.latency_ms, 1)
        return d


def target_phrase(text: str) -> str:
    """What a localize/search turn looks for: "show me the storage tanks" -> "storage tanks"."""
    phrase = _LEAD.sub("", text).strip().rstrip("?.! ")
    phrase = re.sub(
        r"\s+(in|on) (this|the) (image|picture|scene|photo|map|archive|index)$",
        "",
        phrase,
        flags=re.I,
    )
    return phrase or text.strip()


class ChatSession:
    """A conversation: images, an optional index and knowledge base, a router and a memory.

    Args:
        images: image paths (the first is "the image"; two enable change questions).
        model: the image-text model (a name or a loaded ``ImageTextEncoder``).
        index: an index folder for search turns (``skylens index``), or None.
        kb: a knowledge-base folder or object for knowledge turns, or None.
        llm: a ``TextGenerator`` or its name: phrases knowledge and change answers.
    """

    def __init__(
        self,
        images: list[str | Path] | None = None,
        *,
        model: ImageTextEncoder | str = "default",
        index=None,
        kb: KnowledgeBase | str | Path | None = None,
        llm: TextGenerator | str | None = None,
        router: Router | None = None,
    ) -> None:
        self.model = load(model) if isinstance(model, str) else model
        self.model.require(ImageTextEncoder)
        self.images: list[str] = []
        self._rgb: dict[int, np.ndarray] = {}
        self._size: dict[int, tuple[int, int]] = {}
        for image in images or []:
            self.add_image(image)
        self.index = self._open_index(index) if index is not None else None
        self.kb = (
            kb
            if (kb is None or isinstance(kb, KnowledgeBase))
            else KnowledgeBase.open(kb, self.model)
        )
        if isinstance(llm, str):
            from skylens.tasks.change import as_text_generator

            llm = as_text_generator(llm)
        self.llm = llm
        embed = self.kb.embedder.texts if self.kb is not None else self.model.encode_texts
        self.router = router or Router(embed)
        self.history: list[TurnResult] = []
        self.referent: str | None = None
        self.last_regions = 0
        self.change_session = None

    @staticmethod
    def _open_index(index):
        from skylens.index.store import ChipIndex

        return index if isinstance(index, ChipIndex) else ChipIndex.open(index)

    def add_image(self, path: str | Path) -> None:
        """Add an image to the conversation (checked now, so a bad file fails at once)."""
        with read_raster(path) as raster:
            self._size[len(self.images)] = (raster.height, raster.width)
        self.images.append(str(path))
        self.change_session = None

    def rgb(self, i: int) -> np.ndarray:
        if i not in self._rgb:
            self._rgb[i] = load_scene_rgb(self.images[i])
        return self._rgb[i]

    def full_size(self, i: int) -> tuple[int, int]:
        return self._size[i]

    # -- a turn ------------------------------------------------------------------------------
    def resolve(self, text: str, expert: str) -> tuple[str, str | None, bool]:
        """(the turn with its referent filled in, the object it is about, whether it dangles).

        A turn dangles when it says "they"/"there"/"it" for an object and no earlier turn named one.
        """
        obj = question_object(text)
        refers = (
            expert in ("vqa", "localize", "search")
            and _REFERS.search(text) is not None
            and (obj is None or obj.lower().split()[0] in NOT_OBJECTS)
        )
        if not refers:
            return text, obj, False
        if self.referent is None:
            return text, None, True
        ref = self.referent
        if re.match(r"^\s*how many\b", text, re.I):
            return f"how many {ref} are there?", ref, False
        if expert == "vqa" and re.match(r"^\s*(is|are) (it|they|there)\b", text, re.I):
            return f"are there {ref}?", ref, False
        return re.sub(r"\b(them|they|those|these|it|ones)\b", ref, text, count=1), ref, False

    def ask(self, text: str) -> TurnResult:
        """Route and answer one turn.

        Raises:
            InputError: an empty or over-long turn.
        """
        start = time.perf_counter()
        text = " ".join((text or "").split())
        if not text:
            raise InputError("empty turn: ask something, e.g. 'describe the image'")
        if len(text) > MAX_QUESTION_CHARS:
            raise InputError(f"turn is {len(text)} characters; the limit is {MAX_QUESTION_CHARS}")
        route = self.router.route(text, has_image=bool(self.images), images=len(self.images))
        resolved, obj, dangling = self.resolve(text, route.expert)
        if dangling:
            reply = experts.cannot(
                f"'{text}' refers to something not named before in this conversation; "
                "name it, e.g. 'how many ships are there?'"
            )
        else:
            reply = self._run(route, resolved)
        if reply.referent:
            self.referent = reply.referent
        elif obj and obj.lower().split()[0] not in NOT_OBJECTS and route.expert == "vqa":
            self.referent = obj
        result = TurnResult(
            len(self.history) + 1, text, route.expert, reply.answer, reply.confidence, reply.supported,
            route.to_dict(), resolved, reply.evidence, reply.citations, reply.geometry,
            (time.perf_counter() - start) * 1000,
        )  # fmt: skip
        self.history.append(result)
        return result

    def _run(self, route: Route, text: str) -> experts.ExpertReply:
        try:
            if route.expert == "caption":
                return experts.caption(self, text)
            if route.expert == "scene":
                return experts.scene(self, text)
            if route.expert == "vqa":
                return experts.vqa(self, text)
            if route.expert == "search":
                return experts.search(self, text, target_phrase(text))
            if route.expert == "localize":
                return experts.localize(self, text, target_phrase(text))
            if route.expert == "change":
                return experts.change(self, text)
            return experts.knowledge(self, text, about_image=bool(_ABOUT_IMAGE.search(text)))
        except SkylensError as exc:  # a task's typed error is this turn's honest answer
            return experts.cannot(str(exc))
