"""The default captioner of ``skylens-lite``: a small transformer decoder over the image grid.

The frozen EfficientNet-Lite0 tower (``towers.py``) turns an image into a 7x7 grid of 1280-d
features. The decoder reads that grid as 49 memory tokens (plus their mean, a global token) and
writes a sentence one word at a time, attending over the grid at every step: the attention idea
of Show, Attend and Tell (Xu et al., ICML 2015), in the transformer form of Vaswani et al.
(NeurIPS 2017, "Attention Is All You Need"). Words come from a vocabulary built from the training
captions; decoding is length-normalised beam search (Wu et al. 2016, GNMT), greedy when
``beam=1``.

Weights ship beside the alignment heads: ``weights/skylens-lite-captioner.safetensors`` (the
tensors), ``.json`` (config and vocabulary) and ``.md`` (the model card). They are trained by
``skylens train caption`` (``skylens/train/caption.py``); the card's tower digest is checked
against the installed tower when they load, because features of another tower would be read
as nonsense without any error.

Everything runs on a CPU with torch; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import CapabilityError, InputError, ModelError
from skylens.models import towers

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_CAPTIONER = WEIGHTS_DIR / "skylens-lite-captioner.safetensors"
TRAIN_HINT = "train them with `skylens train caption --data ../shared/data`"
IMAGE_BATCH = 32  # images per tower pass when captioning many


# -- configuration ---------------------------------------------------------------------------
@dataclass
class CaptionerConfig:
    """Shape of the decoder and how it decodes; stored in the ``.json`` beside the weights."""

    vocab_size: int = 0  # set from the vocabulary (specials included)
    d_model: int = 128  # width of the decoder; 1,680 training images do not feed a wider one
    layers: int = 1  # decoder layers (self-attention, attention over the grid, feed-forward)
    heads: int = 4
    ffn: int = 256  # feed-forward width (2x d_model keeps the weights small)
    dropout: float = 0.1
    max_len: int = 32  # positions, <bos> and <eos> included; UCM captions have at most 26 words
    feature_dim: int = towers.FEATURE_DIM  # channels of the tower's feature map
    grid: int = 49  # 7x7 cells of the feature map at the tower's 224 px input
    length_penalty: float = 1.0  # beam score = log p / length**alpha; chosen on val by training
    image_tower: str = ""  # features digest (tower weights + tuned head conv) it was trained on
    train: dict = field(default_factory=dict)  # recipe, data, seed, scores (the card's facts)


# -- words -----------------------------------------------------------------------------------
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """UCM-Captions tokenisation: lower case, words split on spaces and punctuation.

    >>> tokenize("There are two tennis-courts, near  a road.")
    ['there', 'are', 'two', 'tennis', 'courts', 'near', 'a', 'road']
    """
    return _WORD.findall(str(text).lower())


class Vocabulary:
    """Word <-> id map; ids 0-3 are ``<pad> <bos> <eos> <unk>``."""

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            words = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
        if len(set(words)) != len(words):
            raise ModelError("vocabulary has duplicate words")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self.pad, self.bos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words of ``captions`` seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Word ids of ``text`` (unknown words -> ``<unk>``), without ``<bos>``/``<eos>``."""
        return [self.index.get(w, self.unk) for w in tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """A readable sentence: words up to ``<eos>``, first letter upper case, a full stop."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                words.append(self.words[i])
        if not words:
            return ""
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."


# -- beam search -----------------------------------------------------------------------------
#: ``log_probs(rows, prefixes)``: for each live hypothesis, the image row it belongs to and its
#: token ids so far (``<bos>`` first, shape (H, t)); returns next-token log-probabilities (H, V).
LogProbs = Callable[[np.ndarray, np.ndarray], np.ndarray]


def beam_search(
    log_probs: LogProbs,
    n_images: int,
    *,
    bos: int,
    eos: int,
    beam: int = 3,
    max_tokens: int = 40,
    length_penalty: float = 1.0,
    banned: Sequence[int] = (),
) -> list[list[int]]:
    """Best token sequence per image by beam search with length normalisation (greedy at beam 1).

    Each step expands every live hypothesis of an image by every word and keeps the ``beam``
    most probable continuations. A continuation ending in ``<eos>`` is finished and scored
    ``log p / length**length_penalty`` (length counts ``<eos>``, so stopping costs a step like a
    word); an image stops once ``beam`` hypotheses have finished. At ``max_tokens`` words the
    live hypotheses are finished as they are. ``<eos>`` is never the first word.

    Args:
        log_probs: the decoder, see ``LogProbs``.
        n_images: how many images (rows) to decode.
        bos, eos: ids of the start and end tokens.
        beam: hypotheses kept per image (1 = greedy).
        max_tokens: most words in a sequence, ``<eos>`` not counted.
        length_penalty: alpha of the normalisation (0 = raw log-probability).
        banned: ids never generated (padding, ``<bos>``, ``<unk>``).

    Returns:
        Per image, the word ids of its best sequence (no ``<bos>``, no ``<eos>``).
    """
    if beam < 1:
        raise InputError(f"beam must be at least 1, got {beam}")
    if max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
    # live hypotheses of all images, as parallel arrays
    rows = np.arange(n_images)
    seqs = np.full((n_images, 1), bos, np.int64)
    scores = np.zeros(n_images)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n_images)]

    def normalised(logp: float, length: int) -> float:
        return logp / (length**length_penalty)

    for step in range(max_tokens + 1):
        if len(rows) == 0:
            break
        lp = np.array(log_probs(rows, seqs), np.float64)
        lp[:, list(banned)] = -np.inf
        if step == 0:
            lp[:, eos] = -np.inf  # no empty caption
        if step == max_tokens:  # out of room: only <eos> may follow
            keep = lp[:, eos].copy()
            lp[:] = -np.inf
            lp[:, eos] = keep
        total = scores[:, None] + lp
        vocab = total.shape[1]
        new_rows, new_seqs, new_scores = [], [], []
        for image in np.unique(rows):
            mine = np.flatnonzero(rows == image)
            flat = total[mine].ravel()
            n_keep = min(beam, int(np.isfinite(flat).sum()))
            best = np.argsort(-flat, kind="stable")[:n_keep]
            for b in best:
                hyp, word = mine[b // vocab], int(b % vocab)
                logp = float(flat[b])
                if word == eos:
                    words = seqs[hyp, 1:].tolist()
                    finished[image].append((normalised(logp, len(words) + 1), words))
                else:
                    new_rows.append(image)
                    new_seqs.append([*seqs[hyp].tolist(), word])
                    new_scores.append(logp)
        # an image with ``beam`` finished hypotheses stops (early stopping)
        alive = [i for i, r in enumerate(new_rows) if len(finished[r]) < beam]
        rows = np.array([new_rows[i] for i in alive], np.int64)
        seqs = np.array([new_seqs[i] for i in alive], np.int64).reshape(len(alive), step + 2)
        scores = np.array([new_scores[i] for i in alive])
    return [max(f, key=lambda s: s[0])[1] if f else [] for f in finished]


# -- the decoder -----------------------------------------------------------------------------
def _decoder_cls():
    import torch
    from torch import nn

    class CaptionDecoder(nn.Module):
        """Grid features (N, 1280, 7, 7) + word prefix -> next-word logits.

        Memory: the 49 cells and their mean, layer-normalised, projected to ``d_model`` and
        tagged with a learned position per cell. Words: embeddings plus learned positions, then
        pre-norm transformer decoder layers (causal self-attention, attention over the memory,
        feed-forward). The output layer shares the word embeddings (Press & Wolf 2017).
        """

        def __init__(self, cfg: CaptionerConfig) -> None:
            super().__init__()
            self.cfg = cfg
            d = cfg.d_model
            self.feature_norm = nn.LayerNorm(cfg.feature_dim)
            self.feature_proj = nn.Linear(cfg.feature_dim, d)
            self.cell_pos = nn.Parameter(torch.zeros(cfg.grid + 1, d))
            self.word_embed = nn.Embedding(cfg.vocab_size, d)
            self.word_pos = nn.Parameter(torch.zeros(cfg.max_len, d))
            layer = nn.TransformerDecoderLayer(
                d,
                cfg.heads,
                cfg.ffn,
                cfg.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.layers = nn.TransformerDecoder(layer, cfg.layers)
            self.out_norm = nn.LayerNorm(d)
            self.drop = nn.Dropout(cfg.dropout)
            nn.init.normal_(self.cell_pos, std=0.02)
            nn.init.normal_(self.word_pos, std=0.02)
            nn.init.normal_(self.word_embed.weight, std=0.02)

        def memory(self, fmap):
            """(N, C, H, W) feature maps -> (N, 1 + H*W, d_model) memory tokens."""
            cells = fmap.flatten(2).transpose(1, 2)
            tokens = torch.cat([cells.mean(1, keepdim=True), cells], 1)
            return self.drop(self.feature_proj(self.feature_norm(tokens)) + self.cell_pos)

        def forward(self, memory, tokens):
            """Logits (N, T, V) of the word after each prefix of ``tokens`` (N, T)."""
            t = tokens.shape[1]
            x = self.drop(self.word_embed(tokens) * self.cfg.d_model**0.5 + self.word_pos[:t])
            causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
            x = self.layers(x, memory, tgt_mask=causal, tgt_is_causal=True)
            return self.out_norm(x) @ self.word_embed.weight.T

    return CaptionDecoder


def build_decoder(cfg: CaptionerConfig):
    """A fresh (randomly initialised) decoder module for ``cfg``."""
    return _decoder_cls()(cfg)


def features_digest(tower: towers.ImageTower) -> str:
    """Digest of what produces the grid features: tower weights, plus the tuned head conv."""
    if tower.conv_head is None:
        return tower.digest
    return tower.digest + "-" + hashlib.sha256(tower.conv_head.tobytes()).hexdigest()[:10]


# -- weights on disk -------------------------------------------------------------------------
def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_captioner(
    path: Path, state: dict[str, np.ndarray], cfg: CaptionerConfig, vocab: Vocabulary
) -> None:
    """Write the tensors (float16 safetensors) and the ``.json`` with config and vocabulary."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v, np.float16) for k, v in state.items()}
    save_file(tensors, str(path), metadata={"skylens": "captioner", "vocab_size": str(len(vocab))})
    path.chmod(0o644)  # safetensors writes owner-only; the file ships as package data
    doc = {"config": asdict(cfg), "vocab": vocab.words}
    config_path(path).write_text(json.dumps(doc, indent=1) + "\n")


def load_captioner_files(path: Path) -> tuple[dict[str, np.ndarray], CaptionerConfig, Vocabulary]:
    """Read tensors, config and vocabulary; ``CapabilityError`` when the files are missing."""
    from safetensors.numpy import load_file

    cfg_file = config_path(path)
    for f in (path, cfg_file):
        if not f.is_file():
            raise CapabilityError(f"captioner weights not found at {f}: {TRAIN_HINT}")
    try:
        doc = json.loads(cfg_file.read_text())
        cfg = CaptionerConfig(**doc["config"])
        vocab = Vocabulary(doc["vocab"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{cfg_file}: not a skylens captioner config ({exc})") from None
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise ModelError(f"{path}: cannot read captioner weights ({exc})") from None
    return tensors, cfg, vocab


# -- the captioner -----------------------------------------------------------------------------
class DefaultCaptioner:
    """Captions images with the trained decoder over ``tower``'s grid features.

    Args:
        tower: the image tower of the default model (its features are what the decoder reads).
        weights: the ``.safetensors`` file; its ``.json`` lies beside it.
        threads: torch threads for decoding (None: leave torch's setting).

    Raises:
        CapabilityError: the weights are missing (the message says how to train them).
        ModelError: the weights disagree with their card or with the installed tower.
    """

    def __init__(
        self,
        tower: towers.ImageTower,
        weights: Path = DEFAULT_CAPTIONER,
        *,
        threads: int | None = None,
    ) -> None:
        import torch

        self.tower = tower
        self.weights = Path(weights)
        tensors, self.config, self.vocab = load_captioner_files(self.weights)
        self._check_card(tensors)
        self.decoder = build_decoder(self.config)
        state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}
        try:
            self.decoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{self.weights}: weights do not fit the config ({exc})") from None
        self.decoder.eval()
        self.threads = threads
        self.banned = (self.vocab.pad, self.vocab.bos, self.vocab.unk)

    def _check_card(self, tensors: dict[str, np.ndarray]) -> None:
        cfg, problems = self.config, []
        installed = features_digest(self.tower)
        if cfg.image_tower != installed:
            problems.append(
                f"trained on tower features {cfg.image_tower or '(none recorded)'}, installed is {installed}"
            )
        emb = tensors.get("word_embed.weight")
        if emb is None or emb.shape[0] != len(self.vocab) or cfg.vocab_size != len(self.vocab):
            shape = None if emb is None else tuple(emb.shape)
            problems.append(
                f"vocabulary has {len(self.vocab)} words, config {cfg.vocab_size}, word embeddings {shape}"
            )
        proj = tensors.get("feature_proj.weight")
        if proj is None or proj.shape[1] != towers.FEATURE_DIM:
            problems.append(f"decoder does not read the tower's {towers.FEATURE_DIM}-d features")
        if problems:
            raise ModelError(
                f"{self.weights}: captioner disagrees with its card: "
                + "; ".join(problems)
                + f" ({TRAIN_HINT})"
            )

    def caption_features(
        self, fmap: np.ndarray, *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        """Captions of tower feature maps (N, 1280, 7, 7), as ``ImageTower.run(..., with_fmap=True)``."""
        import torch

        fmap = np.asarray(fmap, np.float32)
        if fmap.ndim != 4 or fmap.shape[1] != self.config.feature_dim:
            raise InputError(
                f"expected feature maps (N, {self.config.feature_dim}, H, W), got {fmap.shape}"
            )
        if len(fmap) == 0:
            return []
        max_tokens = min(int(max_tokens), self.config.max_len - 2)  # the model's positions
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                memory = self.decoder.memory(torch.from_numpy(fmap))

                def log_probs(rows: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
                    logits = self.decoder(
                        memory[torch.from_numpy(rows)], torch.from_numpy(prefixes)
                    )
                    return torch.log_softmax(logits[:, -1].float(), -1).numpy()

                ids = beam_search(
                    log_probs,
                    len(fmap),
                    bos=self.vocab.bos,
                    eos=self.vocab.eos,
                    beam=beam,
                    max_tokens=max_tokens,
                    length_penalty=self.config.length_penalty,
                    banned=self.banned,
                )
        finally:
            torch.set_num_threads(previous)
        return [self.vocab.decode(s) for s in ids]

    def caption_images(
        self, images: Sequence[np.ndarray], *, beam: int = 3, max_tokens: int = 40
    ) -> list[str]:
        """One caption per RGB uint8 image (HxWx3, any size; resized to the tower's 224 px)."""
        if beam < 1:
            raise InputError(f"beam must be at least 1, got {beam}")
        if max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
        out: list[str] = []
        for s in range(0, len(images), IMAGE_BATCH):
            pixels = towers.preprocess(images[s : s + IMAGE_BATCH])
            fmap = self.tower.run(pixels, with_fmap=True).fmap
            out += self.caption_features(fmap, beam=beam, max_tokens=max_tokens)
        return out


_lock = threading.Lock()


def default_captioner(model, weights: Path | None = None) -> DefaultCaptioner:
    """The captioner of the default model, loaded on first use and cached on ``model``.

    Args:
        model: a ``SkylensLite`` (its ``image_tower`` supplies the features).
        weights: another captioner file (default: the committed one).
    """
    path = Path(weights) if weights is not None else DEFAULT_CAPTIONER
    with _lock:
        cached = getattr(model, "_skylens_captioner", None)
        if cached is None or cached.weights != path:
            cached = DefaultCaptioner(model.image_tower, path)
            model._skylens_captioner = cached
        return cached
