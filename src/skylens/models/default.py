"""``skylens-lite``, the embedded default image-text model (``skylens.load("default")``).

Two frozen towers (``towers.py``: EfficientNet-Lite0 on ImageNet, all-MiniLM-L6-v2) joined by
small heads trained by ``skylens train all`` (``train/align.py``) on every source in
``../shared/data`` and shipped in ``skylens/weights/skylens-lite.safetensors`` with a model card
(``skylens-lite.md``). The towers are built on first use: a text-only call (a text search)
never loads the image tower.

Scores are calibrated on held-out validation images (``train/calibrate.py``): a softmax
temperature for class probabilities (``zero_shot_temperature``), a lead below which classify
says "unsure" (``unsure_margin``), and ``calibrate_scores`` (p(match) of a text and an image,
compared with ``text_match_threshold``) so that search can say when nothing matches.

The joint embedding is the concatenation of two parts, each L2-normalised:

* a *learned* part: image features (standardised, 1280-d) through the image head, caption
  embeddings through a residual text head (``t + W t``, so text the heads never saw keeps its
  MiniLM meaning);
* a *ConSE* part (Norouzi et al. 2014, "Zero-Shot Learning by Convex Combination of Semantic
  Embeddings"): the image's top-k ImageNet posterior mixes the MiniLM embeddings of those class
  names, so the image lands in the sentence space on ImageNet's knowledge alone; the text side is
  its raw MiniLM embedding. Its weight ``beta`` lets words no training caption used still match.

Cosine similarity of two such embeddings is ``(1-beta^2) * learned + beta^2 * conse``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import ModelError
from skylens.models import towers
from skylens.models.base import (
    RS_TEMPLATES,
    Answerer,
    Captioner,
    ImageTextEncoder,
    ModelCard,
    l2_normalize,
    register_backend,
)
from skylens.models.class_descriptions import class_prompts

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "skylens-lite.safetensors"


@dataclass
class HeadsConfig:
    """Settings stored with the trained heads and checked when they load."""

    embed_dim: int  # size of the learned part; the full embedding adds TEXT_DIM when beta > 0
    beta: float = 0.3  # weight of the ConSE part (0 = learned part only)
    conse_topk: int = 10  # ImageNet classes mixed per image; more blurs, fewer is brittle
    conse_temperature: float = 1.0  # softmax temperature on the ImageNet logits
    text_residual: bool = True  # text head is t + W t (keeps MiniLM meaning for unseen words)
    image_size: int = towers.IMAGE_SIZE
    mean: tuple[float, ...] = towers.MEAN
    std: tuple[float, ...] = towers.STD
    image_tower: str = ""  # digest of the EfficientNet-Lite0 weights the heads were trained on
    text_tower: str = ""  # digest of the MiniLM weights
    # calibration, fitted on held-out validation data (train/calibrate.py):
    zero_shot_temperature: float = 0.01  # softmax temperature on cosine similarities (classify)
    unsure_margin: float = 0.0  # top-1 minus top-2 probability below this -> "unsure"
    match_scale: float = 1.0  # p(match) = sigmoid(match_scale * z + match_cosine * cos
    match_cosine: float = 0.0  #   + match_bias), z and cos: see ``SkylensLite.calibrate_scores``
    match_bias: float = 0.0
    train: dict = field(default_factory=dict)  # recipe, data, seed, scores (the model card's facts)


def save_heads(path: Path, tensors: dict[str, np.ndarray], config: HeadsConfig) -> None:
    """Write heads + config as safetensors (config JSON in the metadata)."""
    from safetensors.numpy import save_file

    meta = {"skylens": json.dumps(asdict(config))}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta)
    Path(path).chmod(0o644)  # safetensors writes owner-only; the file ships as package data


def load_heads(path: Path) -> tuple[dict[str, np.ndarray], HeadsConfig]:
    from safetensors import safe_open

    if not path.is_file():
        raise ModelError(
            f"skylens-lite heads not found at {path}: run `skylens train align` to create them"
        )
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
        tensors = {k: fh.get_tensor(k).astype(np.float32) for k in fh.keys()}
    if "skylens" not in meta:
        raise ModelError(f"{path}: no skylens metadata; not a skylens-lite heads file")
    cfg = json.loads(meta["skylens"])
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    known = set(HeadsConfig.__dataclass_fields__)
    return tensors, HeadsConfig(**{k: v for k, v in cfg.items() if k in known})


class SkylensLite(ImageTextEncoder, Captioner, Answerer):
    """The embedded default: frozen towers + trained heads, CPU-only, offline.

    Captioning and question answering are small trained parts over the same frozen image tower,
    with their own committed weights and cards; they load on first use.
    """

    def __init__(self, weights: Path = DEFAULT_WEIGHTS, *, threads: int | None = None) -> None:
        self.heads, self.config = load_heads(Path(weights))
        self.weights = Path(weights)
        self._threads = threads
        self._image_tower: towers.ImageTower | None = None
        self._text_tower: towers.TextTower | None = None
        self._tower_lock = threading.Lock()
        self._check_card(self.weights)
        dim = self.config.embed_dim + (towers.TEXT_DIM if self.config.beta > 0 else 0)
        self.card = ModelCard(
            name="default",
            version="skylens-lite-" + towers.file_sha256(self.weights, 10),
            image_size=self.config.image_size,
            embed_dim=dim,
            mean=self.config.mean,
            std=self.config.std,
            source="skylens-lite: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, heads trained on "
            + (self.config.train.get("data_short") or "UCM-Captions"),
            citation="see skylens/weights/skylens-lite.md",
            extra={"scores": self.config.train.get("scores", {})},
        )

    # -- towers, built on first use (a text-only call never builds the image tower) ----------
    @property
    def image_tower(self) -> towers.ImageTower:
        with self._tower_lock:
            if self._image_tower is None:
                tower = towers.ImageTower(
                    threads=self._threads, conv_head=self.heads.get("tower.conv_head")
                )
                if self.config.image_tower and self.config.image_tower != tower.digest:
                    raise ModelError(
                        f"{self.weights}: trained on image tower {self.config.image_tower}, "
                        f"installed is {tower.digest}"
                    )
                self._image_tower = tower
            return self._image_tower

    @property
    def text_tower(self) -> towers.TextTower:
        with self._tower_lock:
            if self._text_tower is None:
                tower = towers.TextTower()
                if self.config.text_tower and self.config.text_tower != tower.digest:
                    raise ModelError(
                        f"{self.weights}: trained on text tower {self.config.text_tower}, "
                        f"installed is {tower.digest}"
                    )
                self._text_tower = tower
            return self._text_tower

    def _check_card(self, path: Path) -> None:
        cfg = self.config
        problems = []
        if cfg.image_size != towers.IMAGE_SIZE:
            problems.append(f"image_size {cfg.image_size} != tower's {towers.IMAGE_SIZE}")
        if tuple(cfg.mean) != towers.MEAN or tuple(cfg.std) != towers.STD:
            problems.append(
                f"normalisation {cfg.mean}/{cfg.std} != tower's {towers.MEAN}/{towers.STD}"
            )
        w = self.heads.get("img.w1")
        if w is None or w.shape[1] != towers.FEATURE_DIM:
            problems.append("image head does not take the tower's 1280-d features")
        out = (
            self.heads["img.w2"].shape[0]
            if "img.w2" in self.heads
            else (w.shape[0] if w is not None else -1)
        )
        if out != cfg.embed_dim or self.heads["txt.w"].shape != (cfg.embed_dim, towers.TEXT_DIM):
            problems.append(f"head shapes disagree with embed_dim {cfg.embed_dim}")
        conv = self.heads.get("tower.conv_head")
        if conv is not None and conv.shape != (towers.FEATURE_DIM, 320, 1, 1):
            problems.append(f"tuned head conv has shape {conv.shape}, expected (1280, 320, 1, 1)")
        bank = self.heads.get("match.bank")
        if bank is not None and bank.shape[1] != out + (towers.TEXT_DIM if cfg.beta > 0 else 0):
            problems.append(f"match reference bank has width {bank.shape[1]}")
        if not 0 < cfg.zero_shot_temperature <= 1:
            problems.append(f"zero_shot_temperature {cfg.zero_shot_temperature} outside (0, 1]")
        if problems:
            raise ModelError(f"{path}: weights disagree with their card: " + "; ".join(problems))

    # -- image side -------------------------------------------------------------------------
    def embed_tower_output(self, pooled: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Joint embeddings from the tower's pooled features and ImageNet logits."""
        h = self.heads
        x = (pooled.astype(np.float32) - h["img.mu"]) / h["img.sd"]
        x = x @ h["img.w1"].T + h["img.b1"]
        if "img.w2" in h:
            x = _gelu(x) @ h["img.w2"].T + h["img.b2"]
        learned = l2_normalize(x)
        if self.config.beta <= 0:
            return learned
        conse = conse_embedding(
            logits, h["conse.names"], self.config.conse_topk, self.config.conse_temperature
        )
        return _blend(learned, conse, self.config.beta)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        out = self.image_tower.run(towers.preprocess(images))
        return self.embed_tower_output(out.pooled, out.logits)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed an already preprocessed NCHW batch (see ``towers.preprocess``)."""
        out = self.image_tower.run(pixels)
        return self.embed_tower_output(out.pooled, out.logits)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return towers.preprocess(images, self.config.image_size)

    # -- text side --------------------------------------------------------------------------
    def embed_text_features(self, t: np.ndarray) -> np.ndarray:
        h = self.heads
        y = t @ h["txt.w"].T + h["txt.b"]
        learned = l2_normalize(t + y if self.config.text_residual else y)
        if self.config.beta <= 0:
            return learned
        return _blend(learned, t, self.config.beta)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        return self.embed_text_features(self.text_tower.encode(texts))

    def text_classifier(
        self, class_names: Sequence[str], templates: Sequence[str] = RS_TEMPLATES
    ) -> np.ndarray:
        """Zero-shot weights (C, D): each class's prompts, plus the descriptions of classes the
        scene vocabulary knows (``class_descriptions``), embedded and averaged."""
        prompts = [class_prompts(c, tuple(templates)) for c in class_names]
        emb = self.encode_texts([p for ps in prompts for p in ps])
        out, start = [], 0
        for ps in prompts:
            out.append(emb[start : start + len(ps)].mean(0))
            start += len(ps)
        return l2_normalize(np.stack(out))

    # -- honest scores ------------------------------------------------------------------------
    @property
    def zero_shot_temperature(self) -> float:
        """Softmax temperature for class probabilities from cosine similarities, fitted on
        held-out validation data (minimum negative log-likelihood; Guo et al. 2017)."""
        return float(self.config.zero_shot_temperature)

    @property
    def unsure_margin(self) -> float:
        """Probability lead of the best class over the second below which classify says unsure."""
        return float(self.config.unsure_margin)

    #: ``calibrate_scores`` value below which a text match is "no good match" (p(match) = 0.5).
    text_match_threshold: float = 0.5

    def calibrate_scores(self, text_embeddings: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        """Calibrated probability that each image matches each text query, in [0, 1].

        Two cues, joined by a logistic fitted on held-out validation pairs (Platt 1999): the
        cosine itself, and how far it stands out from the query's similarities to a fixed
        reference bank of training images (``match.bank``; a z-score), since a query that
        is equally close to every image (gibberish) matches none of them.

        Args:
            text_embeddings: (Q, D) query embeddings from ``encode_texts``.
            similarities: (Q, N) cosine similarities of those queries to N images (or (Q,)).

        Returns:
            Array shaped like ``similarities``; compare with ``text_match_threshold``.
        """
        q = np.atleast_2d(np.asarray(text_embeddings, np.float32))
        sims = np.asarray(similarities, np.float32)
        one = sims.ndim == 1
        sims = sims.reshape(len(q), -1)
        bank = self.heads.get("match.bank")
        if bank is None:  # v1 heads: no reference bank, only the cosine rescaled to [0, 1]
            p = np.clip((sims + 1) / 2, 0.0, 1.0)
            return p.ravel() if one else p
        ref = q @ bank.T
        z = (sims - ref.mean(1, keepdims=True)) / (ref.std(1, keepdims=True) + 1e-6)
        cfg = self.config
        p = 1.0 / (1.0 + np.exp(-(cfg.match_scale * z + cfg.match_cosine * sims + cfg.match_bias)))
        p = np.clip(p, 0.0, 1.0)
        return p.ravel() if one else p

    # -- captioning and questions (loaded on first use) -------------------------------------
    def caption_images(
        self, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        from skylens.models.captioner import default_captioner

        return default_captioner(self).caption_images(images, beam=beam, max_tokens=max_tokens)

    def answer(self, image: np.ndarray, question: str):
        from skylens.models.answerer import default_answerer

        return default_answerer(self).answer(image, question)


def conse_embedding(
    logits: np.ndarray, name_emb: np.ndarray, k: int, temperature: float
) -> np.ndarray:
    """Posterior-weighted mean of the top-k ImageNet class-name embeddings, L2-normalised."""
    lg = logits.astype(np.float32) / temperature
    idx = np.argpartition(-lg, k - 1, axis=-1)[..., :k]
    top = np.take_along_axis(lg, idx, -1)
    p = np.exp(top - top.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return l2_normalize(np.einsum("nk,nkd->nd", p, name_emb[idx]))


def _blend(learned: np.ndarray, conse: np.ndarray, beta: float) -> np.ndarray:
    a = np.sqrt(1.0 - beta * beta)
    return l2_normalize(np.concatenate([a * learned, beta * conse], axis=-1))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


@register_backend(
    "default", "skylens-lite: embedded, offline CPU model (EfficientNet-Lite0 + MiniLM)", "default"
)
def _load_default(rest: str) -> SkylensLite:
    # "default" or "default:/path/to/heads.safetensors" (retrained heads)
    return SkylensLite(Path(rest) if rest else DEFAULT_WEIGHTS)
