"""Training run and generalisation protocol of the ``skylens-lite`` alignment heads.

``run`` trains the shipped heads on every source and measures, with the library's own
zero-shot classifier (``SkylensLite.text_classifier``) and retrieval metrics:

* leave-one-source-out: heads trained without EuroSAT score zero-shot on all EuroSAT images
  (its own class names); the same without NWPU-RESISC45 (45 classes);
* leave-classes-out within NWPU: ``HELD_OUT_NWPU`` classes are removed from every source
  (their images, their caption-only sentences) and scored zero-shot, among themselves and
  among all 45 names;
* in-domain: UCM-Captions test retrieval (R@K, mR) and UCM, NWPU, EuroSAT held-out images;
* calibration: ECE before (v1's fixed temperature) and after the validation-fitted one.

Choices (ConSE weight, temperature, unsure margin, match logistic) use validation images
only: UCM-Captions val, the held-out split of NWPU and EuroSAT, and for the ConSE weight the
held-out-class images of NWPU's val split; scores reported as zero-shot use other images.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from skylens.models import towers
from skylens.models.default import HeadsConfig, save_heads
from skylens.train import calibrate as cal
from skylens.train.align import (
    HALF_PRECISION,
    AlignConfig,
    Embedder,
    TextBank,
    item_features,
    train_heads,
)
from skylens.train.sources import concept_captions, summary, training_items

#: NWPU classes held out by the leave-classes-out check (none is a UC Merced class).
HELD_OUT_NWPU = (
    "airport",
    "church",
    "desert",
    "island",
    "palace",
    "railway station",
    "stadium",
    "thermal power station",
    "wetland",
)
BETA_GRID = (0.0, 0.2, 0.3, 0.45)
UNSURE_TARGET = 0.9  # predictions that clear the unsure margin are right this often on val
MATCH_BANK = 512  # reference image embeddings shipped for calibrate_scores


@dataclass
class Prepared:
    items: list
    feats: dict
    bank: TextBank
    corpus: dict
    text_tower: object
    image_tower: object
    names_emb: np.ndarray  # ImageNet class names in MiniLM space (ConSE)


def prepare(data_root: Path, cfg: AlignConfig, log=print) -> Prepared:
    """Items of every source, their cached features and the embedded texts."""
    from skylens.train.align import CachedTextTower, imagenet_names

    image_tower, text_tower = towers.ImageTower(), CachedTextTower(towers.TextTower())
    items = training_items(data_root, cfg.sources, towers.cache_dir() / "train")
    log(f"{len(items)} images: {summary(items)}")
    feats = item_features(items, image_tower)
    corpus = concept_captions(data_root)
    bank = TextBank.build(items, corpus, text_tower)
    names = text_tower.encode([f"a photo of a {n}" for n in imagenet_names()])
    return Prepared(
        items,
        feats,
        bank,
        corpus,
        text_tower,
        image_tower,
        names.astype(np.float16).astype(np.float32),
    )


def fit(prep: Prepared, cfg: AlignConfig, keep: np.ndarray, drop_concepts=()) -> dict:
    """Heads trained on the items where ``keep`` is True (training role only)."""
    idx = np.where(keep & np.array([it.role == "train" for it in prep.items]))[0]
    bank = prep.bank
    if drop_concepts:
        bank = replace(
            bank,
            corpus=[
                np.zeros((0, towers.TEXT_DIM), np.float32) if c in drop_concepts else s
                for c, s in zip(bank.concepts, bank.corpus, strict=True)
            ],
        )
    heads = train_heads(prep.feats["pooled"][idx], [prep.items[i] for i in idx], bank, cfg)
    heads["conse.names"] = prep.names_emb
    return heads


def zero_shot_sims(
    emb: Embedder, prep: Prepared, idx: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities (N, C) of items ``idx`` to the classifier of ``names`` and labels."""
    w = emb.classifier(names)
    x = emb.images(prep.feats["pooled"][idx], prep.feats["logits"][idx])
    labels = np.array([names.index(prep.items[i].label_name) for i in idx])
    return x @ w.T, labels


def top1(sims: np.ndarray, labels: np.ndarray) -> float:
    return round(100 * float((sims.argmax(1) == labels).mean()), 2)


def ucm_retrieval(emb: Embedder, prep: Prepared, role: str) -> dict:
    from skylens.evaluate.retrieval import retrieval_metrics

    idx = np.array([i for i, it in enumerate(prep.items) if it.source == "ucm" and it.role == role])
    caps = [c for i in idx for c in prep.items[i].captions]
    owner = np.repeat(np.arange(len(idx)), [len(prep.items[i].captions) for i in idx])
    img = emb.images(prep.feats["pooled"][idx], prep.feats["logits"][idx])
    r = retrieval_metrics(img, emb.texts(caps), owner)
    return {k: round(float(v), 2) for k, v in r.items()}


def _select(
    prep: Prepared, source: str, roles=("train", "val", "test"), concepts=None
) -> np.ndarray:
    return np.array(
        [
            i
            for i, it in enumerate(prep.items)
            if it.source == source
            and it.role in roles
            and (concepts is None or it.concept in concepts)
        ],
        int,
    )


def names_of(prep: Prepared, source: str) -> list[str]:
    return sorted({it.label_name for it in prep.items if it.source == source})


def run(data_root: Path, out: Path, cfg: AlignConfig, *, holdout: bool = True, log=print) -> dict:
    """Train the shipped heads, run the protocol, calibrate, write heads; return card facts."""
    t0 = time.time()
    prep = prepare(Path(data_root), cfg, log)
    src = np.array([it.source for it in prep.items])
    con = np.array([it.concept for it in prep.items])
    all_on = np.ones(len(prep.items), bool)
    scores: dict = {}
    if holdout:
        log("leave-one-source-out: without EuroSAT, without NWPU")
        for source, key in (("eurosat", "leave_eurosat_out"), ("nwpu", "leave_nwpu_out")):
            heads = fit(prep, cfg, src != source)
            emb = Embedder(heads, cfg.beta, prep.text_tower)
            names = names_of(prep, source)
            sims, y = zero_shot_sims(emb, prep, _select(prep, source), names)
            t = cal.fit_temperature(_val_groups(emb, prep, exclude=source))
            scores[key] = {
                "zeroshot_top1": top1(sims, y),
                "classes": len(names),
                "temperature": t,
                "calibration": cal.calibration_report(sims, y, t),
            }
            log(f"{key}: {scores[key]}")
        log(f"leave-classes-out within NWPU: {HELD_OUT_NWPU}")
        held = set(HELD_OUT_NWPU)
        lco = fit(prep, cfg, ~np.isin(con, list(held)), drop_concepts=held)
        lco_by_beta = {}
        for beta in BETA_GRID:
            emb = Embedder(lco, beta, prep.text_tower)
            names = sorted({prep.items[i].label_name for i in _select(prep, "nwpu", concepts=held)})
            val_s, val_y = zero_shot_sims(emb, prep, _select(prep, "nwpu", ("val",), held), names)
            rep_s, rep_y = zero_shot_sims(emb, prep, _select(prep, "nwpu", ("train",), held), names)
            all_s, all_y = zero_shot_sims(
                emb, prep, _select(prep, "nwpu", ("train",), held), names_of(prep, "nwpu")
            )
            lco_by_beta[beta] = {
                "val_top1": top1(val_s, val_y),
                "zeroshot_top1": top1(rep_s, rep_y),
                "zeroshot_top1_among_45": top1(all_s, all_y),
                "images": int(len(rep_y)),
            }
    log("training the shipped heads on every source")
    heads = fit(prep, cfg, all_on)
    val_mr = {
        b: ucm_retrieval(Embedder(heads, b, prep.text_tower), prep, "val")["mR"] for b in BETA_GRID
    }
    val_zs = {b: _val_top1(Embedder(heads, b, prep.text_tower), prep) for b in BETA_GRID}
    pick = {
        b: val_mr[b] + val_zs[b] + (lco_by_beta[b]["val_top1"] if holdout else 0) for b in BETA_GRID
    }
    cfg = replace(cfg, beta=max(BETA_GRID, key=lambda b: pick[b]))
    scores["beta_selection"] = {
        "ucm_val_mR": val_mr,
        "val_zeroshot_top1": val_zs,
        "nwpu_held_out_classes_val_top1": {b: v["val_top1"] for b, v in lco_by_beta.items()}
        if holdout
        else {},
        "beta": cfg.beta,
    }
    if holdout:
        scores["leave_classes_out_nwpu"] = lco_by_beta[cfg.beta] | {"classes": list(HELD_OUT_NWPU)}
    emb = Embedder(heads, cfg.beta, prep.text_tower)
    heads_cfg, calib = calibrate_heads(emb, prep, cfg)
    heads.update(calib.pop("tensors"))
    scores["calibration"] = calib
    scores["ucm_captions_val_retrieval"] = ucm_retrieval(emb, prep, "val")
    scores["ucm_captions_test_retrieval"] = ucm_retrieval(emb, prep, "test")
    for source, roles in (("ucm", ("test",)), ("nwpu", ("val",)), ("eurosat", ("val",))):
        sims, y = zero_shot_sims(emb, prep, _select(prep, source, roles), names_of(prep, source))
        scores[f"{source}_in_domain_heldout_images_top1"] = top1(sims, y)
    config = replace(
        heads_cfg,
        image_tower=prep.image_tower.digest,
        text_tower=prep.text_tower.digest,
        train={
            "recipe": asdict(cfg),
            "data": summary(prep.items),
            "data_short": "UCM(-Captions), NWPU-RESISC45 and EuroSAT subsets, DOTA crops",
            "caption_only_concepts": len(prep.corpus),
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
    return {"scores": scores, "config": asdict(config)}


def _val_groups(emb: Embedder, prep: Prepared, exclude: str = "") -> list:
    groups = []
    for source in ("ucm", "nwpu", "eurosat"):
        if source != exclude and source in {it.source for it in prep.items}:
            groups.append(
                zero_shot_sims(emb, prep, _select(prep, source, ("val",)), names_of(prep, source))
            )
    return groups


def _val_top1(emb: Embedder, prep: Prepared) -> float:
    return round(float(np.mean([top1(s, y) for s, y in _val_groups(emb, prep)])), 2)


def calibrate_heads(emb: Embedder, prep: Prepared, cfg: AlignConfig) -> tuple[HeadsConfig, dict]:
    """Temperature, unsure margin and text-match logistic on validation images."""
    groups = _val_groups(emb, prep)
    t = cal.fit_temperature(groups)
    lr = [cal.lead_and_right(cal.softmax(s / t), y) for s, y in groups]
    margin = cal.choose_unsure_margin(
        np.concatenate([a for a, _ in lr]), np.concatenate([b for _, b in lr]), UNSURE_TARGET
    )
    report = {
        f"val_{src}": cal.calibration_report(s, y, t)
        for src, (s, y) in zip(("ucm", "nwpu", "eurosat"), groups, strict=False)
    }
    # text match: reference bank of training images; validation image vs every class prompt
    train_idx = np.array([i for i, it in enumerate(prep.items) if it.role == "train"])
    train_emb = emb.images(prep.feats["pooled"][train_idx], prep.feats["logits"][train_idx])
    bank = cal.reference_bank(
        train_emb, [prep.items[i].concept for i in train_idx], MATCH_BANK, cfg.seed
    )
    bank = bank.astype(np.float16).astype(np.float32)
    zs, ys = [], []
    for source in ("ucm", "nwpu", "eurosat"):
        idx = _select(prep, source, ("val",))
        names = names_of(prep, source)
        q = emb.texts([f"an aerial image of {n}." for n in names])
        x = emb.images(prep.feats["pooled"][idx], prep.feats["logits"][idx])
        sims = q @ x.T
        z = cal.match_z(q, sims, bank)
        y = np.array([[prep.items[i].label_name == n for i in idx] for n in names])
        zs.append(np.stack([z.ravel(), sims.ravel()], 1))
        ys.append(y.ravel())
    (a, c), b = cal.fit_logistic(np.concatenate(zs), np.concatenate(ys))
    heads_cfg = HeadsConfig(
        embed_dim=cfg.embed_dim,
        beta=cfg.beta,
        zero_shot_temperature=t,
        unsure_margin=margin,
        match_scale=a,
        match_cosine=c,
        match_bias=b,
    )
    return heads_cfg, {
        "temperature": t,
        "unsure_margin": margin,
        "match_logistic": [round(float(a), 4), round(float(c), 4), round(b, 4)],
        "validation": report,
        "tensors": {"match.bank": bank},
    }
