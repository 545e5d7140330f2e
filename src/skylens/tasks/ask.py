"""Visual question answering from image-text similarity alone (``skylens ask``).

``ZeroShotAnswerer`` answers the two question kinds an image-text encoder can ground:

* scene ("what is the theme of this picture?"): zero-shot classification over a scene vocabulary;
* presence ("does this picture contain an airplane?", "is there a river?"): the object's prompt
  score is compared with the scores of a reference set of other objects on the same image (a
  z-score, so one threshold serves every image), yes above ``presence_threshold``.

Counting, locating and open questions need a detector or a language backend: they get
"cannot answer with this model" and the reason, never a guess dressed as fact. ``fit`` learns the
vocabularies and the presence threshold from training questions (e.g. RSIVQA's train split).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from skylens.errors import InputError
from skylens.models.base import ImageTextEncoder

MAX_QUESTION_CHARS = 500
MIN_QUESTIONS_PER_OBJECT = 30  # training questions needed before an object gets its own threshold
DEFAULT_SCENES = (
    "airport", "bare land", "baseball field", "beach", "bridge", "buildings", "chaparral", "church",
    "commercial area", "dense residential area", "desert", "farmland", "forest", "freeway", "golf course",
    "harbor", "industrial area", "intersection", "lake", "meadow", "medium residential area",
    "mobile home park", "mountain", "overpass", "park", "parking lot", "playground", "pond", "port",
    "railway station", "resort", "river", "runway", "school", "sparse residential area", "square",
    "stadium", "storage tanks", "tennis court", "viaduct",
)  # fmt: skip
DEFAULT_OBJECTS = (
    "airplanes", "bare soil", "boats", "buildings", "cars", "chaparral", "courts", "docks", "field",
    "grass", "pavement", "roads", "sand", "sea", "ships", "storage tanks", "trailers", "trees", "water",
)  # fmt: skip

_PRESENCE = (
    re.compile(r"\b(?:does|do) (?:this|the) (?:picture|image|scene) (?:contain|have|show|include) (?:an? |the |any |some )?(?P<obj>.+?)\??$", re.I),
    re.compile(r"\b(?:is|are) there (?:an? |any |some )?(?P<obj>.+?)(?: in (?:this|the) (?:picture|image|scene))?\??$", re.I),
)  # fmt: skip
_SCENE = re.compile(r"\b(theme|scene|what (?:kind|type) of (?:area|place|scene|land))\b", re.I)
_COUNT = re.compile(r"^\s*how many\b", re.I)
_LOCATION = re.compile(r"\b(where|location|located)\b", re.I)


def question_kind(question: str) -> str:
    """scene, presence, count, location or other."""
    q = question.strip()
    if _COUNT.search(q):
        return "count"
    if _LOCATION.search(q):
        return "location"
    if any(p.search(q) for p in _PRESENCE):
        return "presence"
    if _SCENE.search(q):
        return "scene"
    return "other"


def presence_object(question: str) -> str | None:
    for p in _PRESENCE:
        m = p.search(question.strip())
        if m:
            return m.group("obj").strip().rstrip("?. ")
    return None


def check_question(question: str | None) -> str:
    q = (question or "").strip()
    if not q:
        raise InputError("empty question: ask something about the image, e.g. 'is there a river?'")
    if len(q) > MAX_QUESTION_CHARS:
        raise InputError(
            f"question is {len(q)} characters; the limit is {MAX_QUESTION_CHARS} (nothing was truncated)"
        )
    return q


@dataclass
class Answer:
    question: str
    kind: str
    text: str
    supported: bool = True
    confidence: float | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ZeroShotAnswerer:
    """Answers scene and presence questions with an image-text encoder."""

    model: ImageTextEncoder
    scenes: Sequence[str] = DEFAULT_SCENES
    objects: Sequence[str] = DEFAULT_OBJECTS
    presence_threshold: float = 1.0  # z-score of the object against the reference objects
    object_thresholds: dict = field(
        default_factory=dict
    )  # per object, where training had enough questions
    _cache: dict = field(default_factory=dict, repr=False)

    def _texts(self, key: str, names: Sequence[str]) -> np.ndarray:
        if (key, tuple(names)) not in self._cache:
            self._cache[(key, tuple(names))] = self.model.text_classifier(list(names))
        return self._cache[(key, tuple(names))]

    def presence_z(self, image_emb: np.ndarray, obj: str) -> float:
        refs = [o for o in self.objects if o.lower().rstrip("s") != obj.lower().rstrip("s")]
        ref = self._texts("objects", refs) @ image_emb
        own = float(self._texts("object", [obj])[0] @ image_emb)
        return (own - float(ref.mean())) / max(float(ref.std()), 1e-6)

    def answer_embedded(self, image_emb: np.ndarray, question: str) -> Answer:
        q = check_question(question)
        kind = question_kind(q)
        if kind == "scene":
            scores = self._texts("scenes", self.scenes) @ image_emb
            p = np.exp((scores - scores.max()) / 0.01)
            p /= p.sum()
            best = int(np.argmax(scores))
            return Answer(q, kind, self.scenes[best], confidence=round(float(p[best]), 4))
        if kind == "presence":
            obj = presence_object(q) or ""
            z = self.presence_z(image_emb, obj)
            t = self.object_thresholds.get(obj.lower(), self.presence_threshold)
            return Answer(
                q,
                kind,
                "yes" if z > t else "no",
                confidence=round(z, 3),
                reason=f"object '{obj}', z = {z:.2f}, threshold {t:.2f}",
            )
        why = {
            "count": "counting objects needs a detector or a VQA backend (hf:, openai:, gguf:), and none is configured",
            "location": "locating objects in a chip needs a grounding model; use `skylens localize` on the scene instead",
            "other": "open questions need a language backend (hf:, openai:, gguf:), and none is configured",
        }[kind]
        return Answer(q, kind, "cannot answer with this model", supported=False, reason=why)

    def answer(self, image: np.ndarray, question: str) -> Answer:
        check_question(question)
        return self.answer_embedded(self.model.encode_images([image])[0], question)

    def fit(
        self, samples: Iterable[dict], image_embeddings: dict[str, np.ndarray]
    ) -> ZeroShotAnswerer:
        """Learn scene/object vocabularies and the presence threshold from training questions.

        Args:
            samples: dicts with ``question``, ``answer``, ``question_type`` and ``image``.
            image_embeddings: embedding per ``str(sample["image"])``.
        """
        samples = list(samples)
        scenes = sorted({s["answer"] for s in samples if question_kind(s["question"]) == "scene"})
        objects = sorted(
            {
                presence_object(s["question"]) or ""
                for s in samples
                if question_kind(s["question"]) == "presence"
            }
            - {""}
        )
        if scenes:
            self.scenes = scenes
        # the reference set must stay broad: RSIVQA-UCM asks about two objects only
        self.objects = sorted(set(DEFAULT_OBJECTS) | set(objects))
        zs, truth, objs = [], [], []
        for s in samples:
            if question_kind(s["question"]) == "presence" and s["answer"] in ("yes", "no"):
                obj = presence_object(s["question"]) or ""
                zs.append(self.presence_z(image_embeddings[str(s["image"])], obj))
                truth.append(s["answer"] == "yes")
                objs.append(obj.lower())
        if zs:
            zs_a, truth_a, objs_a = np.array(zs), np.array(truth), np.array(objs)
            self.presence_threshold = _best_threshold(zs_a, truth_a)
            for obj in set(objs):
                m = objs_a == obj
                if m.sum() >= MIN_QUESTIONS_PER_OBJECT:
                    self.object_thresholds[obj] = _best_threshold(zs_a[m], truth_a[m])
        return self


def _best_threshold(z: np.ndarray, truth: np.ndarray) -> float:
    """The z threshold with the best accuracy on (z, truth), searched over z's quantiles."""
    grid = np.quantile(z, np.linspace(0.0, 1.0, 101))
    acc = [np.mean((z > t) == truth) for t in grid]
    return float(grid[int(np.argmax(acc))])


def default_answerer(model: ImageTextEncoder) -> ZeroShotAnswerer:
    """The answerer the default model's ``answer`` uses (one per model, built on first use)."""
    cached = getattr(model, "_skylens_answerer", None)
    if cached is None:
        cached = ZeroShotAnswerer(model)
        model._skylens_answerer = cached
    return cached


def ask_image(model, image: np.ndarray, question: str) -> Answer:
    """Answer ``question`` about ``image`` with whatever the model offers.

    An ``Answerer`` answers itself; a plain image-text encoder gets the zero-shot answerer; any
    other model is refused before work.
    """
    from skylens.errors import CapabilityError
    from skylens.models.base import Answerer

    check_question(question)
    if isinstance(model, Answerer):
        return model.answer(image, question)
    if isinstance(model, ImageTextEncoder):
        return ZeroShotAnswerer(model).answer(image, question)
    raise CapabilityError(
        f"model '{model.name}' cannot answer questions about images; "
        "use the default model, an hf: vision-language model or a vision-capable openai: server"
    )
