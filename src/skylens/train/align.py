"""``skylens train align``: train the alignment heads of ``skylens-lite`` on every source.

Recipe (minutes on 2 CPU cores, because both towers are frozen and their outputs are cached):

1. Items: UCM + UCM-Captions, the NWPU-RESISC45 and EuroSAT subsets and DOTA object crops,
   read through the dataset registry (``sources.py``); each carries a scene *concept*.
2. Image features: EfficientNet-Lite0's pooled 1280-d vector and ImageNet logits of each image
   as it is, computed once and cached (``item_features``; the 7x7 grid's source activations are
   cached beside them for the captioner).
3. Texts for an image: one of its own captions (UCM), a sentence of the caption-only sets about
   its concept (RSICD/RSITMD train files), or a prompt from its class name and descriptions
   (``models/class_descriptions.py``, RS5M-style).
4. Loss: symmetric multi-positive InfoNCE (CLIP, Radford et al. 2021): a class-level text is
   positive for every image of its concept and ignored (neither positive nor negative) for
   images of an overlapping concept ("residential" vs "dense residential").
5. Class-balanced sampling: each step draws images with probability 1 / (images of its concept),
   so NWPU's 300-image classes do not drown its 15-image ones.
6. Heads: a linear image head on standardised pooled features, a residual text head starting
   at zero (``t + W t``: names it never saw keep their MiniLM meaning) and the ConSE blend of
   ``models/default.py``.

Calibration and the generalisation protocol are in ``calibrate.py`` and ``protocol.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skylens.models import towers
from skylens.models.base import RS_TEMPLATES
from skylens.models.class_descriptions import class_prompts, related
from skylens.models.default import HeadsConfig
from skylens.train.features import tower_features
from skylens.train.sources import TrainItem, balanced_order

UCM_CLASS_NAMES = {  # readable names for UCM land-use folders (sorted order = class index)
    "agricultural": "agricultural land",
    "airplane": "airplanes",
    "baseballdiamond": "baseball diamond",
    "beach": "beach",
    "buildings": "buildings",
    "chaparral": "chaparral",
    "denseresidential": "dense residential area",
    "forest": "forest",
    "freeway": "freeway",
    "golfcourse": "golf course",
    "harbor": "harbor",
    "intersection": "intersection",
    "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park",
    "overpass": "overpass",
    "parkinglot": "parking lot",
    "river": "river",
    "runway": "runway",
    "sparseresidential": "sparse residential area",
    "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
}
CLASS_NAMES = [UCM_CLASS_NAMES[k] for k in sorted(UCM_CLASS_NAMES)]
HALF_PRECISION = {"conse.names", "match.bank"}  # halves their size; scores are measured after


@dataclass
class AlignConfig:
    """Head-training recipe; every field is recorded in the model card."""

    embed_dim: int = 384  # learned part; MiniLM's width, so the text head can start at identity
    epochs: int = 12  # passes of len(train items) balanced draws (val mR 47.5 at 10)
    batch_size: int = 256
    lr: float = 2e-3  # one-cycle peak
    weight_decay: float = 0.01
    feature_dropout: float = 0.2  # on standardised image features: the cheapest regulariser
    caption_prob: float = 0.6  # an image with captions (UCM) uses one of them this often
    corpus_prob: float = 0.3  # else a caption-only sentence of its concept this often
    beta: float = 0.3  # ConSE weight (models/default.py); run() re-selects it on validation
    sources: tuple[str, ...] = ("ucm", "nwpu", "eurosat", "dota")
    train_text: bool = True  # train the residual text head (False: image head maps into MiniLM)
    threads: int = 1  # torch threads: small matrices, one thread is fastest on a busy machine
    seed: int = 0


# -- features -----------------------------------------------------------------------------------
def item_features(items: Sequence[TrainItem], tower: towers.ImageTower) -> dict[str, np.ndarray]:
    """Pooled features (N, 1280), ImageNet logits (N, 1000) and grid activations of ``items``.

    Cached per source under ``SKYLENS_CACHE/train`` (keyed by the tower digest and the sorted
    image paths), so another subset of the same sources costs nothing. ``rows`` maps each item
    to its row of ``blocks`` (the (M, 1, 320, 7, 7) memory-mapped activations the captioner
    reads through the tower's head conv).
    """
    by_source: dict[str, list[str]] = {}
    for it in items:
        by_source.setdefault(it.source, []).append(str(it.image))
    pooled, logits, index = {}, {}, {}
    blocks = {}
    for source, paths in by_source.items():
        uniq = sorted(set(paths))
        key = hashlib.sha1("\n".join(uniq).encode()).hexdigest()[:10]
        where = towers.cache_dir() / "train" / f"{source}-{tower.digest}-{key}"
        f = tower_features(tower, [Path(p) for p in uniq], where, desc=source)
        pooled_file = where / "pooled.npy"
        if not pooled_file.is_file():
            np.save(pooled_file, _pool(f["blocks"], tower))
        pooled[source], logits[source] = np.load(pooled_file), f["logits"][:, 0].astype(np.float32)
        blocks[source] = f["blocks"]
        index[source] = {p: i for i, p in enumerate(uniq)}
    rows = [(it.source, index[it.source][str(it.image)]) for it in items]
    return {
        "pooled": np.stack([pooled[s][r] for s, r in rows]).astype(np.float32),
        "logits": np.stack([logits[s][r] for s, r in rows]),
        "rows": rows,
        "blocks": blocks,
    }


def _pool(blocks: np.ndarray, tower: towers.ImageTower) -> np.ndarray:
    """The tower's pooled output computed from cached last-block activations (view 0)."""
    import torch

    module = tower.torch_module()
    conv = module.tuned if module.tuned is not None else module.net._conv_head
    out = []
    with torch.no_grad():
        for i in range(0, len(blocks), 256):
            x = torch.from_numpy(np.asarray(blocks[i : i + 256, 0], np.float32))
            out.append(module.head(x, conv).mean((2, 3)).numpy())
    return np.concatenate(out).astype(np.float32)


# -- texts --------------------------------------------------------------------------------------
@dataclass
class TextBank:
    """Every text the heads train on, embedded once by MiniLM."""

    concepts: list[str]  # concept id -> name
    prompts: list[np.ndarray]  # concept id -> (P, 384) prompt embeddings
    corpus: list[np.ndarray]  # concept id -> (S, 384) caption-only sentences (may be empty)
    captions: np.ndarray  # (T, 384) distinct item captions
    caption_id: dict[str, int]

    @classmethod
    def build(
        cls, items: Sequence[TrainItem], corpus: dict[str, list[str]], text_tower
    ) -> TextBank:
        concepts = sorted({it.concept for it in items})
        prompts = [text_tower.encode(class_prompts(c, RS_TEMPLATES)) for c in concepts]
        sentences = [text_tower.encode(corpus.get(c, [])) for c in concepts]
        caps = sorted({c for it in items for c in it.captions})
        return cls(
            concepts,
            prompts,
            sentences,
            text_tower.encode(caps),
            {c: i for i, c in enumerate(caps)},
        )


# -- training -----------------------------------------------------------------------------------
def train_heads(
    pooled: np.ndarray, items: Sequence[TrainItem], bank: TextBank, cfg: AlignConfig
) -> dict[str, np.ndarray]:
    """Train the image and text heads on ``pooled`` features of ``items`` (their role ignored:
    pass training items only). Returns numpy tensors for ``save_heads``."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    cid = {c: i for i, c in enumerate(bank.concepts)}
    concept = np.array([cid[it.concept] for it in items])
    own = [[bank.caption_id[c] for c in it.captions] for it in items]
    owners: dict[int, set[int]] = {}  # caption id -> positions (in items) of images that own it
    for i, o in enumerate(own):
        for k in o:
            owners.setdefault(k, set()).add(i)
    rel = np.array([[related(a, b) for b in bank.concepts] for a in bank.concepts])
    mu, sd = pooled.mean(0), pooled.std(0) + 1e-3
    x_all = torch.from_numpy((pooled - mu) / sd)
    img = torch.nn.Linear(pooled.shape[1], cfg.embed_dim)
    txt = torch.nn.Linear(
        bank.captions.shape[1] if len(bank.captions) else towers.TEXT_DIM, cfg.embed_dim
    )
    torch.nn.init.zeros_(txt.weight)
    torch.nn.init.zeros_(txt.bias)
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(20.0), dtype=torch.float32))
    params = [*img.parameters(), logit_scale] + (list(txt.parameters()) if cfg.train_text else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = int(np.ceil(len(items) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps)
    for _ in tqdm(range(cfg.epochs), desc="training heads", unit="epoch"):
        order = balanced_order([it.concept for it in items], steps * cfg.batch_size, rng)
        for b in range(steps):
            ii = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            tvec, tcap, tcon = _draw_texts(ii, own, concept, bank, cfg, rng)
            x = F.dropout(x_all[ii], cfg.feature_dropout, training=True)
            ie = F.normalize(img(x), dim=-1)
            t = torch.from_numpy(tvec)
            te = F.normalize(t + txt(t), dim=-1)
            is_class = tcap < 0
            pos = np.where(is_class[None, :], tcon[None, :] == concept[ii][:, None], False)
            for b_, k in enumerate(tcap):
                if k >= 0:
                    pos[:, b_] = np.isin(ii, list(owners[k]))
            ign = is_class[None, :] & rel[concept[ii]][:, tcon] & ~pos
            pos_t, ign_t = torch.from_numpy(pos), torch.from_numpy(ign)
            s = (logit_scale.exp().clamp(max=100.0) * ie @ te.T).masked_fill(ign_t, -1e4)
            lp_i = torch.logsumexp(s.masked_fill(~pos_t, -1e4), 1) - torch.logsumexp(s, 1)
            lp_t = torch.logsumexp(s.masked_fill(~pos_t, -1e4), 0) - torch.logsumexp(s, 0)
            loss = -(lp_i.mean() + lp_t.mean()) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return {
            "img.mu": mu.astype(np.float32),
            "img.sd": sd.astype(np.float32),
            "img.w1": img.weight.numpy().copy(),
            "img.b1": img.bias.numpy().copy(),
            "txt.w": txt.weight.numpy().copy(),
            "txt.b": txt.bias.numpy().copy(),
        }


def _draw_texts(ii, own, concept, bank: TextBank, cfg: AlignConfig, rng):
    """One text per drawn image: (vectors, caption id or -1, concept id of class-level texts)."""
    vecs, cap, con = [], [], []
    for i in ii:
        c = concept[i]
        r = rng.random()
        if own[i] and r < cfg.caption_prob:
            k = own[i][rng.integers(len(own[i]))]
            vecs.append(bank.captions[k])
            cap.append(k)
        elif len(bank.corpus[c]) and r < cfg.caption_prob + cfg.corpus_prob:
            vecs.append(bank.corpus[c][rng.integers(len(bank.corpus[c]))])
            cap.append(-1)
        else:
            vecs.append(bank.prompts[c][rng.integers(len(bank.prompts[c]))])
            cap.append(-1)
        con.append(c)
    return np.stack(vecs).astype(np.float32), np.array(cap), np.array(con)


class CachedTextTower:
    """A text tower that remembers every sentence it embedded (evaluations repeat prompts)."""

    def __init__(self, tower) -> None:
        self.tower, self.digest, self.memo = tower, getattr(tower, "digest", ""), {}

    @classmethod
    def wrap(cls, tower):
        return tower if isinstance(tower, cls) else cls(tower)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        new = sorted({t for t in texts if t not in self.memo})
        if new:
            self.memo.update(zip(new, self.tower.encode(new), strict=True))
        if not texts:
            return np.zeros((0, towers.TEXT_DIM), np.float32)
        return np.stack([self.memo[t] for t in texts]).astype(np.float32)


class Embedder:
    """Applies heads to cached features exactly as ``SkylensLite`` does at run time, and builds
    zero-shot classifiers with the model's own ``text_classifier``."""

    def __init__(self, heads: dict[str, np.ndarray], beta: float, text_tower) -> None:
        from skylens.models.default import SkylensLite

        self.heads = heads
        self.model = SkylensLite.__new__(SkylensLite)
        self.model.heads = heads
        self.model.config = HeadsConfig(embed_dim=heads["img.w1"].shape[0], beta=beta)
        self.model._text_tower = CachedTextTower.wrap(text_tower)
        self.model._image_tower = None
        self.model._tower_lock = threading.Lock()

    def images(self, pooled: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return self.model.embed_tower_output(pooled, logits)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode_texts(list(texts))

    def classifier(self, names: Sequence[str]) -> np.ndarray:
        return self.model.text_classifier(list(names))


def imagenet_names() -> list[str]:
    """The 1,000 ImageNet class names (the ConSE vocabulary), from torchvision's metadata."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def run(data_root, out, cfg: AlignConfig, *, holdout: bool = True, log=print) -> dict:
    """Train, measure, calibrate and write the heads (see ``protocol.run``)."""
    from skylens.train.protocol import run as run_protocol

    return run_protocol(data_root, out, cfg, holdout=holdout, log=log)
