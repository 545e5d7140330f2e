"""Route a chat turn to one expert: rules first, then similarity to the experts' descriptions.

The mixture-of-experts idea of RS-MoE (Lin et al., "RS-MoE: A Vision-Language Model with
Mixture of Experts for Remote Sensing Image Captioning and Visual Question Answering", 2024)
without a trained gate: each expert is an existing skylens task, and the gate is

1. **rules**: wording that names a task outright ("describe", "what changed", "search the
   archive", "show me the ...", "how many ...") routes with confidence ``RULE_CONFIDENCE``;
2. **similarity**: otherwise the turn's sentence embedding is compared with a few example
   requests per expert (the expert's description by example); the best expert wins and the
   confidence is a softmax over experts of the best cosine per expert (temperature
   ``SIMILARITY_TEMPERATURE``).

Yes/no and open questions are routed, never refused: an open question about the world goes to
the knowledge expert, one about the picture to visual question answering.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from skylens.errors import InputError
from skylens.models.answerer import question_kind

EXPERTS = ("caption", "scene", "vqa", "search", "localize", "change", "knowledge")
RULE_CONFIDENCE = 0.9
SIMILARITY_TEMPERATURE = 0.05
#: example requests per expert: the text the similarity gate compares a turn with
EXAMPLES: dict[str, tuple[str, ...]] = {
    "caption": (
        "describe this image",
        "what do you see in the picture",
        "give me a short description of the scene",
        "write a caption for this photo",
    ),
    "scene": (
        "what kind of place is this",
        "classify this scene",
        "what is the land use here",
        "is this a residential or an industrial area",
    ),
    "vqa": (
        "is there a river in the image",
        "are there any cars",
        "how many buildings are there",
        "does the picture contain a bridge",
    ),
    "search": (
        "find other images of airports in the archive",
        "search the index for harbours",
        "retrieve pictures with ships from the collection",
        "look up similar scenes in my images",
    ),
    "localize": (
        "show me the storage tanks",
        "highlight the runway",
        "mark where the boats are on the map",
        "draw a box around the buildings",
    ),
    "change": (
        "what changed between the two images",
        "compare before and after",
        "was anything built since the first picture",
        "how much area changed",
    ),
    "knowledge": (
        "what is a harbour used for",
        "what is the capital of France",
        "tell me about the history of this place",
        "explain what the EuroSAT dataset contains",
        "why are airport runways so long",
        "which country has the largest area",
    ),
}
_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("change", re.compile(r"\b(chang\w*|before and after|differen\w* between|compare the (two|images|pictures)|since the (first|earlier|previous)|appeared|disappeared|demolish\w*|new(ly)? built)\b", re.I)),
    ("search", re.compile(r"\b(search|archive|(my|the) (index|collection)|other (images|pictures|scenes)|similar (images|pictures|scenes)|retrieve|look up images)\b", re.I)),
    ("localize", re.compile(r"^\s*(please\s+)?(show( me)?|highlight|mark|outline|locate|point( out)?|draw|segment|find|circle)\b|\bwhere (exactly )?(is|are)\b|\b(mask|bounding box|heat ?map)\b", re.I)),
    ("caption", re.compile(r"\b(describe|description|caption|what (do|can) you see|what('s| is) (in|on) (this|the) (image|picture|photo)|summari[sz]e)\b", re.I)),
    ("scene", re.compile(r"\b(what (kind|type|sort) of (place|scene|area|land|landscape)|classify|land[- ](use|cover)|scene (type|class)|which scene)\b", re.I)),
    ("knowledge", re.compile(r"\b(who|when was|when were|history|built in|capital|population|tell me about|explain|define|definition|meaning of|what does .+ mean|used for|purpose of|what is an? |what are the |which country|how big is|dataset|according to|what (do|does) \w+( \w+)? (hold|store|contain|produce|mean|do)|why (do|does|is|are)|how (do|does) \w+ work)\b", re.I)),
)  # fmt: skip
_PICTURE_WORDS = re.compile(r"\b(image|picture|photo|scene|here|this area|visible|you see)\b", re.I)


@dataclass(frozen=True)
class Route:
    """Where a turn goes: the expert, how sure the router is (0..1) and why."""

    expert: str
    confidence: float
    method: str  # "rule", "question kind" or "similarity"
    reason: str

    def to_dict(self) -> dict:
        return {**self.__dict__, "confidence": round(self.confidence, 4)}


class Router:
    """Rules, then embedding similarity to the experts' example requests.

    Args:
        embed: texts -> L2-normalised rows (a sentence encoder); None uses rules and question
            kinds only (unmatched turns go to ``fallback``).
        fallback: the expert for a turn nothing else claims.
    """

    def __init__(
        self,
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
        fallback: str = "knowledge",
    ) -> None:
        self.embed = embed
        self.fallback = fallback
        self._examples: tuple[np.ndarray, list[str]] | None = None

    def _example_matrix(self) -> tuple[np.ndarray, list[str]]:
        if self._examples is None:
            owners = [e for e in EXPERTS for _ in EXAMPLES[e]]
            texts = [t for e in EXPERTS for t in EXAMPLES[e]]
            self._examples = (np.asarray(self.embed(texts), np.float32), owners)
        return self._examples

    def similarity(self, turn: str) -> dict[str, float]:
        """Best cosine of ``turn`` to each expert's examples."""
        matrix, owners = self._example_matrix()
        cos = matrix @ np.asarray(self.embed([turn]), np.float32)[0]
        best: dict[str, float] = {}
        for owner, c in zip(owners, cos, strict=True):
            best[owner] = max(best.get(owner, -1.0), float(c))
        return best

    def route(self, turn: str, *, has_image: bool = True, images: int = 1) -> Route:
        """The expert for ``turn``.

        Args:
            turn: the user's words.
            has_image: whether the conversation holds an image (without one, picture experts
                are not chosen by similarity).
            images: how many images the conversation holds (change needs two).
        """
        text = " ".join((turn or "").split())
        if not text:
            raise InputError("empty turn: say or ask something")
        for expert, pattern in _RULES:
            m = pattern.search(text)
            if m:
                if expert == "knowledge" and has_image and _PICTURE_WORDS.search(text):
                    break  # "what is the population here" may still be a knowledge turn; see below
                return Route(expert, RULE_CONFIDENCE, "rule", f"'{m.group(0).strip()}'")
        kind = question_kind(text)
        if kind in ("presence", "count", "comparison") and has_image:
            return Route("vqa", RULE_CONFIDENCE, "question kind", f"a {kind} question")
        if kind == "scene" and has_image:
            return Route("scene", RULE_CONFIDENCE, "question kind", "a scene question")
        if self.embed is None:
            return Route(self.fallback, 0.5, "fallback", "no rule matched")
        sims = self.similarity(text)
        allowed = [e for e in EXPERTS if has_image or e in ("search", "knowledge")]
        allowed = [e for e in allowed if e != "change" or images >= 2] or [self.fallback]
        scores = np.array([sims[e] for e in allowed]) / SIMILARITY_TEMPERATURE
        p = np.exp(scores - scores.max())
        p /= p.sum()
        best = int(np.argmax(p))
        return Route(
            allowed[best],
            float(p[best]),
            "similarity",
            f"cosine {sims[allowed[best]]:.2f} to its examples",
        )
