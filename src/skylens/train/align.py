"""``skylens train align``: train the alignment heads of ``skylens-lite``.

Recipe (all of it runs on 2 CPU cores in minutes, because the towers are frozen):

1. Tower features of every UCM-Captions *train* image under 8 dihedral views and 4 random crops
   (``features.py``), cached. The val split picks nothing but is reported; the test split is only
   ever measured.
2. Texts: the image's captions, and with probability ``class_prompt_prob`` a prompt built from its
   scene class name ("an aerial image of storage tanks."), which ties the heads to short
   class-name queries as well as to full sentences.
3. Loss: symmetric multi-positive InfoNCE (CLIP, Radford et al. 2021). UCM captions repeat across
   images of a class ("There is a piece of farmland ."), so every pair whose caption belongs to the
   image counts as positive instead of being pushed apart as a false negative.
4. Heads: a linear image head on standardised pooled features; a residual linear text head
   initialised at zero. The ConSE part (``models/default.py``) is blended in at ``beta``.

A generalisation check (``--holdout``) retrains with five scene classes removed from training and
reports zero-shot accuracy on them, which is what a user's unseen class names look like.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skylens.models import towers
from skylens.models.base import RS_TEMPLATES
from skylens.models.default import HeadsConfig, conse_embedding, save_heads
from skylens.train.features import tower_features

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
HALF_PRECISION = {"conse.names"}  # halves its size; scores below are measured after the cast
HOLDOUT_CLASSES = (1, 5, 9, 14, 19)
BETA_GRID = (0.0, 0.2, 0.3, 0.5)  # airplanes, chaparral, golf course, overpass, storage tanks


@dataclass
class AlignConfig:
    embed_dim: int = (
        384  # learned part; equal to MiniLM's width so the text head can start at identity
    )
    epochs: int = 30  # val mR plateaus from 20 to 120 epochs
    batch_size: int = 256
    lr: float = 2e-3  # one-cycle peak for the heads
    lr_conv: float = 1e-3  # peak for the tower's 1x1 head conv (0 = keep it frozen); +1.5-2 val mR
    weight_decay: float = 0.01
    feature_dropout: float = (
        0.2  # on standardised image features: cheap regulariser for 1,680 images
    )
    class_prompt_prob: float = 0.3  # share of texts that are class-name prompts (zero-shot queries)
    beta: float = (
        0.2  # ConSE weight (models/default.py); run() re-selects it on val + held-out classes
    )
    views: int = 8  # dihedral views per training image
    crops: int = 4  # random resized crops per training image
    seed: int = 0


@dataclass
class UcmCaptions:
    """UCM-Captions in the Karpathy layout, with each image's scene class (see shared/data README)."""

    paths: dict[str, list[Path]]
    captions: dict[str, list[list[str]]]
    labels: dict[str, np.ndarray]

    @classmethod
    def load(cls, root: Path) -> UcmCaptions:
        data = json.loads((root / "dataset.json").read_text())
        files = {p.stem: p for p in (root / "images").iterdir()}
        out = cls({}, {}, {})
        for split in ("train", "val", "test"):
            ims = [im for im in data["images"] if im["split"] == split]
            out.paths[split] = [files[Path(im["filename"]).stem] for im in ims]
            out.captions[split] = [[s["raw"].strip() for s in im["sentences"]] for im in ims]
            out.labels[split] = np.array(
                [(int(Path(im["filename"]).stem) - 1) // 100 for im in ims]
            )
        return out


def retrieval_scores(img: np.ndarray, txt: np.ndarray, txt_img: np.ndarray) -> dict[str, float]:
    """R@1/5/10 both ways and mR (percent), the protocol of AMFMN/RemoteCLIP."""
    from skylens.evaluate.retrieval import retrieval_metrics

    return retrieval_metrics(img, txt, txt_img)


def train_heads(
    blocks: np.ndarray,
    caption_ids: list[list[int]],
    labels: np.ndarray,
    caption_emb: np.ndarray,
    prompt_emb: np.ndarray,
    cfg: AlignConfig,
    keep_classes: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Train the heads (and the tower's 1x1 head conv) on cached last-block activations.

    Args:
        blocks: (N, V, 320, 7, 7) activations of N training images under V views.
        caption_ids: per image, indices into ``caption_emb`` of its captions.
        labels: per image, its scene class (index into ``prompt_emb``).
        caption_emb: (T, 384) MiniLM embeddings of the distinct captions.
        prompt_emb: (C, templates, 384) MiniLM embeddings of class-name prompts.
        keep_classes: train only on images of these classes (the generalisation check).

    Returns numpy tensors for ``save_heads``.
    """
    import torch
    import torch.nn.functional as F

    from skylens.models.towers import ImageTower

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = ImageTower().torch_module().net
    conv, bn = net._conv_head, net._bn1
    bn.eval()  # frozen statistics and affine: only the 1x1 conv is tuned
    for p in bn.parameters():
        p.requires_grad = False

    def pooled(x):
        return F.relu6(bn(conv(x))).mean((2, 3))

    def batch(ii, views):
        return torch.from_numpy(
            np.stack([np.asarray(blocks[i, v], np.float32) for i, v in zip(ii, views, strict=True)])
        )

    with torch.no_grad():  # standardise with the untuned features of view 0
        base = torch.cat(
            [
                pooled(batch(range(i, min(i + 256, len(blocks))), [0] * min(256, len(blocks) - i)))
                for i in range(0, len(blocks), 256)
            ]
        )
    mu, sd = base.mean(0), base.std(0) + 1e-3
    idx_all = (
        np.arange(len(blocks))
        if keep_classes is None
        else np.where(np.isin(labels, keep_classes))[0]
    )
    img = torch.nn.Linear(base.shape[1], cfg.embed_dim)
    txt = torch.nn.Linear(caption_emb.shape[1], cfg.embed_dim)
    torch.nn.init.zeros_(txt.weight)  # residual text head starts as MiniLM itself
    torch.nn.init.zeros_(txt.bias)
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(20.0), dtype=torch.float32))
    groups = [{"params": [*img.parameters(), *txt.parameters(), logit_scale], "lr": cfg.lr}]
    if cfg.lr_conv > 0:
        groups.append({"params": list(conv.parameters()), "lr": cfg.lr_conv, "weight_decay": 0.0})
    else:
        conv.weight.requires_grad = False
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(idx_all) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, [g["lr"] for g in groups], total_steps=cfg.epochs * steps_per_epoch
    )
    cap_sets = [set(c) for c in caption_ids]
    n_templates = prompt_emb.shape[1]

    for _ in tqdm(range(cfg.epochs), desc="training heads", unit="epoch"):
        perm = rng.permutation(idx_all)
        for b in range(0, len(perm), cfg.batch_size):
            ii = np.sort(perm[b : b + cfg.batch_size])  # sorted: sequential reads of the memmap
            views = rng.integers(0, blocks.shape[1], len(ii))
            x = F.dropout((pooled(batch(ii, views)) - mu) / sd, cfg.feature_dropout, training=True)
            ie = F.normalize(img(x), dim=-1)
            # one text per image: a caption, or a class-name prompt; text id < 0 marks a class prompt
            tid = np.array(
                [
                    -1 - labels[i]
                    if rng.random() < cfg.class_prompt_prob
                    else caption_ids[i][rng.integers(len(caption_ids[i]))]
                    for i in ii
                ]
            )
            tvec = np.stack(
                [
                    prompt_emb[-1 - t, rng.integers(n_templates)] if t < 0 else caption_emb[t]
                    for t in tid
                ]
            )
            t = torch.from_numpy(tvec)
            te = F.normalize(t + txt(t), dim=-1)
            pos = torch.from_numpy(
                np.array(
                    [
                        [(t_ in cap_sets[i]) if t_ >= 0 else labels[i] == -1 - t_ for t_ in tid]
                        for i in ii
                    ]
                )
            )
            s = logit_scale.exp().clamp(max=100.0) * ie @ te.T
            lse_pos_i = torch.logsumexp(s.masked_fill(~pos, -1e4), 1)
            lse_pos_t = torch.logsumexp(s.masked_fill(~pos, -1e4), 0)
            loss = (
                -(
                    (lse_pos_i - torch.logsumexp(s, 1)).mean()
                    + (lse_pos_t - torch.logsumexp(s, 0)).mean()
                )
                / 2
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return {
            "tower.conv_head": conv.weight.numpy().copy(),
            "img.mu": mu.numpy(),
            "img.sd": sd.numpy(),
            "img.w1": img.weight.numpy().copy(),
            "img.b1": img.bias.numpy().copy(),
            "txt.w": txt.weight.numpy().copy(),
            "txt.b": txt.bias.numpy().copy(),
        }


def heads_pooled(heads: dict[str, np.ndarray], blocks: np.ndarray) -> np.ndarray:
    """Pooled features of view 0 through the tuned head conv, as the ONNX tower computes them."""
    import torch
    import torch.nn.functional as F

    from skylens.models.towers import ImageTower

    net = ImageTower().torch_module().net.eval()
    net._conv_head.weight.data = torch.from_numpy(heads["tower.conv_head"])
    out = []
    with torch.no_grad():
        for i in range(0, len(blocks), 256):
            x = torch.from_numpy(np.asarray(blocks[i : i + 256, 0], np.float32))
            out.append(F.relu6(net._bn1(net._conv_head(x))).mean((2, 3)).numpy())
    return np.concatenate(out)


def _imagenet_names() -> list[str]:
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class _Embedder:
    """Applies trained heads to cached activations exactly as ``SkylensLite`` does at run time."""

    def __init__(self, heads: dict[str, np.ndarray], cfg: AlignConfig) -> None:
        from skylens.models.default import SkylensLite

        self.heads = heads
        self.model = SkylensLite.__new__(SkylensLite)
        self.model.heads = heads
        self.model.config = HeadsConfig(embed_dim=cfg.embed_dim, beta=cfg.beta)

    def images(self, f: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.embed_tower_output(
            heads_pooled(self.heads, f["blocks"]), f["logits"][:, 0].astype(np.float32)
        )

    def texts(self, t: np.ndarray) -> np.ndarray:
        return self.model.embed_text_features(t)


def run(data_root: Path, out: Path, cfg: AlignConfig, *, holdout: bool = True, log=print) -> dict:
    """Train on ``data_root/ucm_captions``; write heads + model card to ``out``; return scores."""
    t0 = time.time()
    ucm = UcmCaptions.load(data_root / "ucm_captions")
    image_tower, text_tower = towers.ImageTower(), towers.TextTower()
    feats = {}
    for split in ("train", "val", "test"):
        views, crops = (cfg.views, cfg.crops) if split == "train" else (1, 0)
        where = (
            towers.cache_dir()
            / "train"
            / f"ucm-{split}-{image_tower.digest}-v{views}c{crops}s{cfg.seed}"
        )
        feats[split] = tower_features(
            image_tower,
            ucm.paths[split],
            where,
            views=views,
            crops=crops,
            seed=cfg.seed,
            desc=split,
        )

    caps = sorted({c for split in ucm.captions.values() for cs in split for c in cs})
    cid = {c: i for i, c in enumerate(caps)}
    log(
        f"encoding {len(caps)} distinct captions and {len(CLASS_NAMES)} x {len(RS_TEMPLATES)} prompts"
    )
    cap_emb = text_tower.encode(caps)
    prompt_emb = text_tower.encode(
        [t.format(c) for c in CLASS_NAMES for t in RS_TEMPLATES]
    ).reshape(len(CLASS_NAMES), len(RS_TEMPLATES), -1)
    names_emb = text_tower.encode([f"a photo of a {n}" for n in _imagenet_names()])
    train_ids = [sorted({cid[c] for c in cs}) for cs in ucm.captions["train"]]

    def fit(keep=None) -> tuple[dict, _Embedder]:
        heads = train_heads(
            feats["train"]["blocks"], train_ids, ucm.labels["train"], cap_emb, prompt_emb, cfg, keep
        )
        heads["conse.names"] = names_emb.astype(np.float16).astype(np.float32)
        return heads, _Embedder(heads, cfg)

    def retrieval(e: _Embedder, split: str) -> dict:
        txts = [c for cs in ucm.captions[split] for c in cs]
        txt_img = np.repeat(
            np.arange(len(ucm.captions[split])), [len(cs) for cs in ucm.captions[split]]
        )
        r = retrieval_scores(
            e.images(feats[split]), e.texts(cap_emb[[cid[t] for t in txts]]), txt_img
        )
        return {k: round(float(v), 2) for k, v in r.items()}

    def zero_shot(e: _Embedder, f: dict, y: np.ndarray, classes: np.ndarray) -> float:
        w = np.stack([e.texts(prompt_emb[c]).mean(0) for c in classes])
        return round(100 * float(np.mean(classes[(e.images(f) @ w.T).argmax(1)] == y)), 2)

    log("training heads")
    heads, _ = fit()
    holdout_scores: dict[float, float] = {}
    if holdout:
        keep = np.array([c for c in range(len(CLASS_NAMES)) if c not in HOLDOUT_CLASSES])
        log(f"generalisation check: retraining without {[CLASS_NAMES[c] for c in HOLDOUT_CLASSES]}")
        ho_heads, _ = fit(keep)
        sub = np.array(HOLDOUT_CLASSES)
        # every image of a held-out class was unseen by these heads: score them all (view 0 = as-is)
        sel = {s: np.isin(ucm.labels[s], sub) for s in ("train", "val", "test")}
        ho_feats = {
            "blocks": np.concatenate([np.asarray(feats[s]["blocks"][sel[s], :1]) for s in sel]),
            "logits": np.concatenate([feats[s]["logits"][sel[s], :1] for s in sel]),
        }
        y_ho = np.concatenate([ucm.labels[s][sel[s]] for s in sel])
        for beta in BETA_GRID:
            holdout_scores[beta] = zero_shot(
                _Embedder(ho_heads, replace(cfg, beta=beta)), ho_feats, y_ho, sub
            )
        conse = conse_embedding(ho_feats["logits"][:, 0], heads["conse.names"], 10, 1.0)
        w_conse = np.stack([prompt_emb[c].mean(0) for c in sub])
        conse_only = round(100 * float(np.mean(sub[(conse @ w_conse.T).argmax(1)] == y_ho)), 2)
    # beta: the ConSE weight that maximises val mR + held-out zero-shot top-1 (never the test split)
    val_by_beta = {
        beta: retrieval(_Embedder(heads, replace(cfg, beta=beta)), "val")["mR"]
        for beta in BETA_GRID
    }
    cfg = replace(
        cfg, beta=max(BETA_GRID, key=lambda b: val_by_beta[b] + holdout_scores.get(b, 0.0))
    )
    log(f"beta selection: val mR {val_by_beta}, held-out top-1 {holdout_scores} -> beta {cfg.beta}")
    emb = _Embedder(heads, cfg)
    scores: dict = {f"ucm_captions_{s}_retrieval": retrieval(emb, s) for s in ("val", "test")}
    scores["ucm_landuse_zeroshot_captions_test_top1"] = zero_shot(
        emb, feats["test"], ucm.labels["test"], np.arange(len(CLASS_NAMES))
    )
    scores["beta_selection"] = {"val_mR": val_by_beta, "holdout5_top1": holdout_scores}
    if holdout:
        scores["holdout5_zeroshot_top1"] = holdout_scores[cfg.beta]
        scores["holdout5_zeroshot_top1_conse_only"] = conse_only
        scores["holdout5_classes"] = [CLASS_NAMES[c] for c in HOLDOUT_CLASSES]
        scores["holdout5_images"] = int(len(y_ho))

    config = HeadsConfig(
        embed_dim=cfg.embed_dim,
        beta=cfg.beta,
        image_tower=image_tower.digest,
        text_tower=text_tower.digest,
        train={
            "recipe": asdict(cfg),
            "data": "UCM-Captions train split (1,680 images x 5 captions), Qu et al. 2016; scene class names",
            "scores": scores,
            "seconds": round(time.time() - t0, 1),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    save_heads(
        out / "skylens-lite.safetensors",
        {k: v.astype(np.float16) if k in HALF_PRECISION else v for k, v in heads.items()},
        config,
    )
    log(json.dumps(scores, indent=1))
    return {"scores": scores, "config": asdict(config)}
