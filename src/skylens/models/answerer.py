"""Answerers: visual question answering about one image (the default model's ``answer``).

The task that picks an answerer for any model is ``skylens.tasks.ask.ask_image``.

Question kinds follow the remote-sensing VQA benchmarks (RSVQA: Lobry et al., IEEE TGRS 2020;
RSIVQA: Zheng et al., IEEE TGRS 2022): ``scene`` (what is the theme), ``presence`` (is there /
does this picture contain), ``count`` (how many), ``location`` (where is / what is the location
of), ``comparison`` (are there more X than Y) and ``yes_no`` (other yes/no questions); the rest
is ``other``.

Two answerers:

* ``ZeroShotAnswerer`` grounds scene and presence questions in image-text similarity alone:
  scene is zero-shot classification over a scene vocabulary; presence compares the object's
  prompt score with the scores of a reference set of other objects on the same image (a z-score,
  so one threshold serves every image).
* ``TrainedAnswerer`` adds small heads trained by ``skylens train vqa`` (``skylens.train.vqa``) on
  RSIVQA: per question kind, an MLP over the model's frozen image features, the question's text
  embedding and, for models with a spatial feature map, the 7x7 map of similarity between the
  map's cells and the asked object's words. Its answers are the answers seen in training for
  that kind. Presence questions about an object the training never asked about go to the
  zero-shot path; count and location questions about such objects are refused.

A question kind without a trained head (comparison, yes/no and open questions: RSIVQA-UCM has
none) gets "cannot answer with this model" and the reason, never a guess dressed as fact.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import InputError, ModelError
from skylens.models.base import ImageTextEncoder
from skylens.models.questions import (  # noqa: F401  (re-exported: the one question parser)
    KINDS,
    presence_object,
    question_kind,
    question_object,
)

MAX_QUESTION_CHARS = 500
MIN_QUESTIONS_PER_OBJECT = 30  # training questions needed before an object gets its own threshold
CANNOT = "cannot answer with this model"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_VQA_WEIGHTS = WEIGHTS_DIR / "skylens-lite-vqa.safetensors"
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


def object_key(obj: str) -> str:
    """A phrase's head noun, lower case and singular ("the red cars" -> "car"), for vocabulary checks."""
    words = re.findall(r"[a-z]+", obj.lower())
    if not words:
        return ""
    w = words[-1]
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def check_question(question: str | None) -> str:
    """The stripped question, or InputError when it is empty or over ``MAX_QUESTION_CHARS``."""
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
    """One answer: the text, whether the model could answer at all, and why."""

    question: str
    kind: str
    text: str
    supported: bool = True
    confidence: float | None = None  # a probability in [0, 1] (None: no score)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.confidence is not None:  # a guard; every answerer already returns [0, 1]
            c = float(self.confidence)
            self.confidence = 0.0 if c != c else min(1.0, max(0.0, c))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_UNSUPPORTED = {
    "count": "counting objects needs a detector or a VQA backend (hf:, openai:, gguf:), and none is configured",
    "location": "locating objects in a chip needs a grounding model; use `skylens localize` on the scene instead",
    "comparison": "comparing amounts of objects needs a VQA backend (hf:, openai:, gguf:); "
    "this model was trained on no comparison questions",
    "yes_no": "general yes/no questions need a VQA backend (hf:, openai:, gguf:); "
    "this model was trained on no such questions",
    "other": "open questions need a language backend (hf:, openai:, gguf:), and none is configured",
    "area": "measuring areas needs a segmentation model or a VQA backend (hf:, openai:, gguf:)",
    "rural_urban": "this model was trained on no rural/urban questions; ask for the scene instead",
    "change": "change questions need two images: use `skylens change` (skylens.tasks.change)",
}


PRESENCE_SLOPE = 1.0  # logistic slope per unit of z-score around the presence threshold


def presence_probability(z: float, threshold: float) -> float:
    """Probability-like confidence that an object is present, from its z-score: 0.5 at the
    threshold, towards 1 (0) as z rises above (falls below) it. Always in [0, 1]."""
    return float(1.0 / (1.0 + np.exp(-PRESENCE_SLOPE * (z - threshold))))


def _refusal(q: str, kind: str, reason: str) -> Answer:
    return Answer(q, kind, CANNOT, supported=False, reason=reason)


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
    note: str = ""  # appended to every refusal's reason (e.g. why no trained heads are loaded)
    _cache: dict = field(default_factory=dict, repr=False)

    def _texts(self, key: str, names: Sequence[str]) -> np.ndarray:
        if (key, tuple(names)) not in self._cache:
            self._cache[(key, tuple(names))] = self.model.text_classifier(list(names))
        return self._cache[(key, tuple(names))]

    def presence_z(self, image_emb: np.ndarray, obj: str) -> float:
        """The object's prompt score on the image as a z-score against the reference objects."""
        refs = [o for o in self.objects if o.lower().rstrip("s") != obj.lower().rstrip("s")]
        ref = self._texts("objects", refs) @ image_emb
        own = float(self._texts("object", [obj])[0] @ image_emb)
        return (own - float(ref.mean())) / max(float(ref.std()), 1e-6)

    def answer_embedded(self, image_emb: np.ndarray, question: str) -> Answer:
        """Answer from the image's joint embedding (see ``answer``)."""
        q = check_question(question)
        kind = question_kind(q)
        if kind == "scene":
            scores = self._texts("scenes", self.scenes) @ image_emb
            t = float(getattr(self.model, "zero_shot_temperature", 0.01) or 0.01)
            p = np.exp((scores - scores.max()) / t)  # the model's calibrated temperature
            p /= p.sum()
            best = int(np.argmax(scores))
            return Answer(
                q,
                kind,
                self.scenes[best],
                confidence=round(float(p[best]), 4),
                reason="zero-shot: image-text similarity over the scene vocabulary",
            )
        if kind == "presence":
            obj = presence_object(q) or ""
            z = self.presence_z(image_emb, obj)
            t = self.object_thresholds.get(obj.lower(), self.presence_threshold)
            p_yes = presence_probability(z, t)
            return Answer(
                q,
                kind,
                "yes" if z > t else "no",
                confidence=round(p_yes if z > t else 1.0 - p_yes, 4),
                reason=f"zero-shot: object '{obj}', z = {z:.2f}, threshold {t:.2f}",
            )
        why = _UNSUPPORTED[kind] + (f" ({self.note})" if self.note else "")
        return _refusal(q, kind, why)

    def answer(self, image: np.ndarray, question: str) -> Answer:
        """Answer ``question`` about an RGB uint8 image (HxWx3)."""
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

    def settings(self) -> dict:
        """The fitted vocabularies and thresholds (stored with trained weights)."""
        return {
            "scenes": list(self.scenes),
            "objects": list(self.objects),
            "presence_threshold": float(self.presence_threshold),
            "object_thresholds": {k: float(v) for k, v in self.object_thresholds.items()},
        }


def _best_threshold(z: np.ndarray, truth: np.ndarray) -> float:
    """The z threshold with the best accuracy on (z, truth), searched over z's quantiles."""
    grid = np.quantile(z, np.linspace(0.0, 1.0, 101))
    acc = [np.mean((z > t) == truth) for t in grid]
    return float(grid[int(np.argmax(acc))])


# -- features shared by training and answering ---------------------------------------------------
@dataclass
class ImageFeatures:
    """What the trained heads read of one image."""

    pooled: np.ndarray  # (F,) the tower's pooled features (a plain encoder: its embedding)
    embedding: np.ndarray  # (D,) the joint image-text embedding (for the zero-shot path)
    cells: np.ndarray | None = None  # (49, D) joint embeddings of the 7x7 feature-map cells


def has_feature_map(model) -> bool:
    """Whether ``model`` exposes a frozen tower with a 7x7 feature map (the default model)."""
    return hasattr(model, "image_tower") and hasattr(model, "embed_tower_output")


def image_features(model, images: Sequence[np.ndarray]) -> list[ImageFeatures]:
    """Features of RGB uint8 images for the trained heads (one tower pass per image)."""
    if not has_feature_map(model):
        emb = np.asarray(model.encode_images(list(images)), np.float32)
        return [ImageFeatures(pooled=e, embedding=e) for e in emb]
    out = model.image_tower.run(model.preprocess(list(images)), with_fmap=True)
    emb = model.embed_tower_output(out.pooled, out.logits)
    n, c, h, w = out.fmap.shape
    cells = out.fmap.reshape(n, c, h * w).transpose(0, 2, 1).reshape(n * h * w, c)
    cell_emb = model.embed_tower_output(cells, np.repeat(out.logits, h * w, axis=0))
    cell_emb = cell_emb.reshape(n, h * w, -1)
    return [
        ImageFeatures(pooled=out.pooled[i], embedding=emb[i], cells=cell_emb[i]) for i in range(n)
    ]


def question_embeddings(model, questions: Sequence[str]) -> np.ndarray:
    """Sentence embeddings of questions (MiniLM for the default model, else ``encode_texts``)."""
    if hasattr(model, "text_tower"):
        return np.asarray(model.text_tower.encode(list(questions)), np.float32)
    return np.asarray(model.encode_texts(list(questions)), np.float32)


def object_map(features: ImageFeatures, object_emb: np.ndarray | None) -> np.ndarray:
    """Where the asked object is: the cells' similarity to the object's words, z-scored (49
    values, row-major 7x7), then the raw mean and max cell similarity and the whole image's
    similarity. Without a feature map (or an object): the image's similarity only (or 0)."""
    if object_emb is None:
        return np.zeros(1 if features.cells is None else 52, np.float32)
    whole = float(features.embedding @ object_emb)
    if features.cells is None:
        return np.array([whole], np.float32)
    sims = features.cells @ object_emb
    z = (sims - sims.mean()) / max(float(sims.std()), 1e-6)
    return np.concatenate([z, [sims.mean(), sims.max(), whole]]).astype(np.float32)


def head_input(
    inputs: Sequence[str],
    features: ImageFeatures,
    question_emb: np.ndarray,
    object_emb: np.ndarray | None,
) -> np.ndarray:
    """Concatenate the named inputs into one vector: ``image`` (pooled tower features),
    ``embedding`` (joint image embedding), ``question``, ``object_map``."""
    parts = {
        "image": lambda: features.pooled,
        "embedding": lambda: features.embedding,
        "question": lambda: question_emb,
        "object_map": lambda: object_map(features, object_emb),
    }
    return np.concatenate([np.asarray(parts[k](), np.float32) for k in inputs])


# -- trained heads -------------------------------------------------------------------------------
@dataclass
class AnswerHead:
    """One question kind's classifier: standardised input -> (ReLU hidden layer) -> answers."""

    answers: list[str]
    inputs: list[str]
    tensors: dict[str, np.ndarray]  # mu, sd, w1, b1 and, with a hidden layer, w2, b2
    objects: list[str] = field(default_factory=list)  # object keys seen in training ([] = any)
    low_confidence: float = 0.0  # below this, val accuracy was under 50%: said in the reason
    scores: dict = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Answer scores (N, len(answers)) for inputs ``x`` (N, input_dim)."""
        t = self.tensors
        h = (x - t["mu"]) / t["sd"]
        h = h @ t["w1"].T + t["b1"]
        if "w2" in t:
            h = np.maximum(h, 0.0) @ t["w2"].T + t["b2"]
        return h

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax over ``answers`` for inputs ``x`` (N, input_dim)."""
        h = self.logits(x)
        h = h - h.max(-1, keepdims=True)
        p = np.exp(h)
        return p / p.sum(-1, keepdims=True)

    @property
    def input_dim(self) -> int:
        return int(self.tensors["mu"].shape[0])


@dataclass
class TrainedAnswerer:
    """Trained heads per question kind, with the zero-shot answerer for unseen objects."""

    model: ImageTextEncoder
    heads: dict[str, AnswerHead]
    zero_shot: ZeroShotAnswerer
    config: dict = field(default_factory=dict)
    _image_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def features_of(self, image: np.ndarray) -> ImageFeatures:
        """Image features, cached for the last few images (questions come in runs per image)."""
        arr = np.ascontiguousarray(image)
        key = hashlib.sha1(arr.tobytes()).hexdigest() + str(arr.shape)
        with self._lock:
            cached = self._image_cache.get(key)
        if cached is None:
            cached = image_features(self.model, [arr])[0]
            with self._lock:
                self._image_cache[key] = cached
                while len(self._image_cache) > 8:
                    self._image_cache.popitem(last=False)
        return cached

    def answer(self, image: np.ndarray, question: str) -> Answer:
        """Answer ``question`` about an RGB uint8 image (HxWx3)."""
        q = check_question(question)
        kind = question_kind(q)
        if kind in self.config.get("zero_shot_kinds", {}):
            return self.zero_shot.answer_embedded(self.features_of(image).embedding, q)
        head = self.heads.get(kind)
        if head is None:
            why = self.config.get("missing_heads", {}).get(kind) or _UNSUPPORTED[kind]
            return _refusal(q, kind, why)
        obj = question_object(q) if "object_map" in head.inputs or head.objects else None
        if head.objects and (obj is None or object_key(obj) not in head.objects):
            if kind in ("presence", "scene"):
                return self.zero_shot.answer_embedded(self.features_of(image).embedding, q)
            seen = ", ".join(head.objects)
            return _refusal(
                q,
                kind,
                f"the {kind} head was trained on questions about {seen} only; "
                f"'{obj or q}' never occurred (or too rarely) in its training data",
            )
        feats = self.features_of(image)
        x = head_input(
            head.inputs,
            feats,
            question_embeddings(self.model, [q])[0] if "question" in head.inputs else None,
            self.model.encode_texts([obj])[0] if obj and "object_map" in head.inputs else None,
        )
        p = head.probabilities(x[None])[0]
        best = int(np.argmax(p))
        conf = float(p[best])
        reason = f"trained {kind} head ({len(head.answers)} answers seen in training)"
        if conf < head.low_confidence:
            reason += f"; low confidence (below {head.low_confidence:.2f}, val accuracy < 50%)"
        return Answer(q, kind, head.answers[best], confidence=round(conf, 4), reason=reason)


def encoder_identity(model) -> dict:
    """What trained heads must match in the model that loads them (checked at load)."""
    ident = {"name": model.name, "version": model.version}
    if has_feature_map(model):
        ident["image_tower"] = model.image_tower.digest
    if hasattr(model, "text_tower"):
        ident["text_tower"] = model.text_tower.digest
    return ident


def save_answerer(path: Path, heads: dict[str, AnswerHead], config: dict) -> Path:
    """Write heads as safetensors (config JSON in the metadata) and the config as ``.json``."""
    from safetensors.numpy import save_file

    path = Path(path)
    config = dict(config)
    config["heads"] = {
        k: {
            "answers": h.answers,
            "inputs": h.inputs,
            "objects": h.objects,
            "low_confidence": h.low_confidence,
            "scores": h.scores,
            "shapes": {n: list(t.shape) for n, t in h.tensors.items()},
        }
        for k, h in heads.items()
    }
    tensors = {
        f"{k}.{n}": np.ascontiguousarray(t, np.float32)
        for k, h in heads.items()
        for n, t in h.tensors.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=1, sort_keys=True)
    save_file(tensors, str(path), metadata={"skylens-vqa": text})
    path.with_suffix(".json").write_text(text + "\n", encoding="utf-8")
    return path


def load_answerer(model: ImageTextEncoder, path: Path = DEFAULT_VQA_WEIGHTS) -> TrainedAnswerer:
    """Load trained VQA heads for ``model``; ModelError naming the file when they do not fit it.

    Checked: the file carries skylens VQA metadata; the model (name, version, tower digests) is
    the one the heads were trained on; each head's tensor shapes agree with its answers and with
    the width of the features ``model`` produces.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"VQA heads not found at {path}: run `skylens train vqa` to create them")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k).astype(np.float32) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    if "skylens-vqa" not in meta:
        raise ModelError(f"{path}: no skylens-vqa metadata; not a skylens VQA heads file")
    config = json.loads(meta["skylens-vqa"])
    problems = []
    trained, installed = config.get("encoder", {}), encoder_identity(model)
    for key in ("name", "version", "image_tower", "text_tower"):
        if trained.get(key, "") != installed.get(key, ""):
            problems.append(
                f"trained on {key} '{trained.get(key, '')}', loading model has '{installed.get(key, '')}'"
            )
    dims = config.get("dims", {})
    heads: dict[str, AnswerHead] = {}
    for kind, spec in config.get("heads", {}).items():
        t = {n: tensors.get(f"{kind}.{n}") for n in spec.get("shapes", {})}
        if any(v is None for v in t.values()) or not {"mu", "sd", "w1", "b1"} <= set(t):
            problems.append(f"{kind} head: tensors missing")
            continue
        want = sum(dims.get(k, -1) for k in spec["inputs"])
        out = t["w2"].shape[0] if "w2" in t else t["w1"].shape[0]
        if t["mu"].shape != (want,) or t["w1"].shape[1] != want:
            problems.append(f"{kind} head takes {t['w1'].shape[1]} inputs, features give {want}")
        if out != len(spec["answers"]):
            problems.append(f"{kind} head has {out} outputs for {len(spec['answers'])} answers")
        heads[kind] = AnswerHead(
            answers=list(spec["answers"]),
            inputs=list(spec["inputs"]),
            tensors=t,
            objects=list(spec.get("objects", [])),
            low_confidence=float(spec.get("low_confidence", 0.0)),
            scores=dict(spec.get("scores", {})),
        )
    if not problems:
        probe = feature_dims(model)
        for k, v in dims.items():
            if probe.get(k) != v:
                problems.append(f"{k} features are {probe.get(k)}-d, heads expect {v}")
    if problems:
        raise ModelError(f"{path}: VQA heads disagree with their card: " + "; ".join(problems))
    zs = config.get("zero_shot", {})
    zero_shot = ZeroShotAnswerer(
        model,
        scenes=zs.get("scenes", DEFAULT_SCENES),
        objects=zs.get("objects", DEFAULT_OBJECTS),
        presence_threshold=float(zs.get("presence_threshold", 1.0)),
        object_thresholds=dict(zs.get("object_thresholds", {})),
    )
    return TrainedAnswerer(model, heads, zero_shot, config)


def feature_dims(model) -> dict[str, int]:
    """Widths of the head inputs ``model`` produces (probed on one blank image)."""
    cached = getattr(model, "_skylens_vqa_dims", None)
    if cached is None:
        f = image_features(model, [np.zeros((32, 32, 3), np.uint8)])[0]
        cached = {
            "image": int(f.pooled.shape[0]),
            "embedding": int(f.embedding.shape[0]),
            "question": int(question_embeddings(model, ["is there a river?"]).shape[1]),
            "object_map": 1 if f.cells is None else 52,
        }
        model._skylens_vqa_dims = cached
    return cached


def default_answerer(model: ImageTextEncoder, weights: Path = DEFAULT_VQA_WEIGHTS):
    """The answerer the default model's ``answer`` uses (one per model, built on first use).

    The trained heads at ``weights``; when that file is absent, the zero-shot answerer, whose
    refusals then say so. Heads that do not fit the model raise ModelError.
    """
    cached = getattr(model, "_skylens_answerer", None)
    if cached is None:
        if Path(weights).is_file():
            cached = load_answerer(model, Path(weights))
        else:
            cached = ZeroShotAnswerer(
                model,
                note=f"trained VQA heads not found at {weights}; run `skylens train vqa`",
            )
        model._skylens_answerer = cached
    return cached


__all__ = [
    "Answer",
    "AnswerHead",
    "ImageFeatures",
    "TrainedAnswerer",
    "ZeroShotAnswerer",
    "default_answerer",
]
