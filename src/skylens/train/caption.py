"""``skylens train caption``: train the default captioner (``models/captioner.py``).

Recipe (the image tower is frozen; its activations are cached by ``train/align.py``):

1. Images: every source of ``train/sources.py`` (read through the dataset registry). UCM images
   keep their UCM-Captions sentences; NWPU, EuroSAT and DOTA images (at most
   ``max_per_concept`` a class) get sentences of their class: RSICD/RSITMD train captions of
   the same scene concept and sentences built from the class descriptions
   (``scene_captions``), so captions name what is there rather than the nearest UCM class.
   The tower's head conv turns the cached activations into the 7x7x1280 grid the decoder
   reads, exactly as ``ImageTower.run(..., with_fmap=True)`` does at run time.
2. Vocabulary: the words of the training captions seen at least ``min_count`` times.
3. Teacher-forced cross-entropy with label smoothing (Szegedy et al. 2016); each step takes a
   batch of images with one of their captions drawn at random, AdamW with a one-cycle schedule.
4. Choices on the UCM-Captions *val* split only: the epoch kept (val CIDEr-D, greedy), then the
   beam width and length penalty. The test split is scored once at the end and picks nothing;
   held-out NWPU / EuroSAT images give the class agreement (``class_agreement``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skylens.models import towers
from skylens.models.captioner import (
    CaptionerConfig,
    Vocabulary,
    beam_search,
    build_decoder,
    features_digest,
    save_captioner,
)

DATA_NOTE = (
    "UCM-Captions train split (1,680 images x 5 captions, Qu et al. 2016); NWPU-RESISC45 and EuroSAT "
    "subsets (train split) and DOTA crops with sentences of their class (RSICD/RSITMD train "
    "captions of the same class, and class descriptions)"
)


@dataclass
class CaptionTrainConfig:
    """Training recipe; every field is recorded in the model card."""

    d_model: int = 128  # UCM's ~300 words and templated sentences need little width
    layers: int = 1
    heads: int = 4
    ffn: int = 256
    dropout: float = 0.2  # 1,680 images: dropout is the cheapest regulariser
    epochs: int = 20
    batch_size: int = 32  # images a step, each with one of its captions drawn at random
    lr: float = 1e-3  # one-cycle peak
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    min_count: int = 2  # words seen fewer times become <unk> (caption-only sets add rare words)
    eval_every: int = 5  # epochs between val checks (greedy CIDEr-D) for keeping the best epoch
    beams: tuple[int, ...] = (1, 2, 3, 5)  # beam widths tried on val
    length_penalties: tuple[float, ...] = (0.0, 0.5, 1.0)  # alphas tried on val
    threads: int = 1  # one thread: faster than two on a busy 2-core machine
    sources: tuple[str, ...] = ("ucm", "nwpu", "eurosat", "dota")
    max_per_concept: int = 60  # non-UCM training images a class (keeps UCM's sentences in balance)
    seed: int = 0


@dataclass
class CaptionSplit:
    """Image paths and reference captions of one split."""

    paths: list[Path]
    captions: list[list[str]]
    ids: list[str] = field(default_factory=list)


def load_split(root: Path, split: str) -> CaptionSplit:
    """Paths and captions of a UCM-Captions split (Karpathy layout under ``root``)."""
    from skylens.datasets import get_dataset

    ds = get_dataset("ucm_captions", root, split=split)
    samples = [ds[i] for i in range(len(ds))]
    return CaptionSplit(
        paths=[Path(s["image"]) for s in samples],
        captions=[list(s["captions"]) for s in samples],
        ids=[str(s.get("id", i)) for i, s in enumerate(samples)],
    )


class GridFeatures:
    """Cached last-block activations -> the tower's 7x7x1280 grid, as the run-time tower makes it.

    Args:
        blocks: (N, V, 320, 7, 7) activations of N images under V views (``tower_features``).
        tower: the image tower (its tuned head conv, if any, is applied here).
    """

    def __init__(self, blocks: np.ndarray, tower: towers.ImageTower) -> None:
        import torch

        self.blocks = blocks
        module = tower.torch_module()
        self._conv = module.tuned if module.tuned is not None else module.net._conv_head
        self._head = module.head
        for p in module.parameters():
            p.requires_grad = False
        self._torch = torch

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def views(self) -> int:
        return self.blocks.shape[1]

    def grid(self, images: np.ndarray, views: np.ndarray):
        """(B, 1280, 7, 7) float32 torch grid of ``images`` seen under ``views``."""
        x = np.stack(
            [np.asarray(self.blocks[i, v], np.float32) for i, v in zip(images, views, strict=True)]
        )
        with self._torch.no_grad():
            return self._head(self._torch.from_numpy(x), self._conv)


def caption_tensor(captions: list[list[str]], vocab: Vocabulary, max_len: int) -> np.ndarray:
    """(images, captions per image, max_len) ids: ``<bos> words <eos>`` padded with ``<pad>``.

    Captions longer than ``max_len - 2`` words are cut (UCM's longest has 26 words; max_len 32).
    """
    per = max(len(c) for c in captions)
    out = np.full((len(captions), per, max_len), vocab.pad, np.int64)
    for i, caps in enumerate(captions):
        for j in range(per):
            ids = vocab.encode(caps[j % len(caps)])[: max_len - 2]  # short lists repeat captions
            seq = [vocab.bos, *ids, vocab.eos]
            out[i, j, : len(seq)] = seq
    return out


def decode_split(
    decoder,
    feats: GridFeatures,
    vocab: Vocabulary,
    *,
    beam: int,
    alpha: float,
    max_tokens: int,
    batch: int = 105,
) -> list[str]:
    """Captions of view 0 of every image in ``feats`` (the decoder in eval mode)."""
    import torch

    decoder.eval()
    out: list[str] = []
    with torch.inference_mode():
        for s in range(0, len(feats), batch):
            idx = np.arange(s, min(s + batch, len(feats)))
            memory = decoder.memory(feats.grid(idx, np.zeros(len(idx), np.int64)))

            def log_probs(rows, prefixes, memory=memory):
                logits = decoder(memory[torch.from_numpy(rows)], torch.from_numpy(prefixes))
                return torch.log_softmax(logits[:, -1], -1).numpy()

            seqs = beam_search(
                log_probs,
                len(idx),
                bos=vocab.bos,
                eos=vocab.eos,
                beam=beam,
                max_tokens=max_tokens,
                length_penalty=alpha,
                banned=(vocab.pad, vocab.bos, vocab.unk),
            )
            out += [vocab.decode(q) for q in seqs]
    return out


def cider(predictions: list[str], references: list[list[str]]) -> float:
    """Corpus CIDEr-D (coco-caption scale) with the evaluator's PTB tokenisation."""
    from skylens.evaluate.caption_metrics import cider_d
    from skylens.evaluate.tokenizer import tokenize_all

    hyp = [h.split() for h in tokenize_all(predictions)]
    flat = tokenize_all([r for rs in references for r in rs])
    refs, i = [], 0
    for rs in references:
        refs.append([t.split() for t in flat[i : i + len(rs)]])
        i += len(rs)
    return cider_d(hyp, refs)[0]


def train_decoder(
    feats: GridFeatures,
    captions: np.ndarray,
    vocab: Vocabulary,
    cfg: CaptionTrainConfig,
    *,
    val: tuple[GridFeatures, list[list[str]]] | None = None,
    log=print,
) -> tuple[dict[str, np.ndarray], CaptionerConfig, dict]:
    """Train a decoder by teacher forcing; keep the epoch with the best val CIDEr-D (greedy).

    Args:
        feats: training images' grids under their views.
        captions: (images, captions per image, max_len) ids from ``caption_tensor``.
        vocab: the vocabulary ``captions`` was encoded with.
        cfg: the recipe.
        val: val grids and reference captions; without it the last epoch is kept.

    Returns:
        The decoder's tensors, its config, and the training history (loss and val CIDEr-D).
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model_cfg = CaptionerConfig(
        vocab_size=len(vocab),
        d_model=cfg.d_model,
        layers=cfg.layers,
        heads=cfg.heads,
        ffn=cfg.ffn,
        dropout=cfg.dropout,
        max_len=captions.shape[2],
    )
    decoder = build_decoder(model_cfg)
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = int(np.ceil(len(feats) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.1
    )
    per = captions.shape[1]
    history: dict = {"loss": [], "val_cider_greedy": {}}
    best_state, best_score = None, -1.0
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="training captioner", unit="epoch"):
        decoder.train()
        perm = rng.permutation(len(feats))
        total, count = 0.0, 0
        for b in range(0, len(perm), cfg.batch_size):
            ii = np.sort(perm[b : b + cfg.batch_size])  # sorted: sequential reads of the memmap
            grid = feats.grid(ii, rng.integers(0, feats.views, len(ii)))

            memory = decoder.memory(grid)
            tokens = torch.from_numpy(captions[ii, rng.integers(0, per, len(ii))])
            length = int((tokens != vocab.pad).sum(1).max())
            tokens = tokens[:, :length]
            logits = decoder(memory, tokens[:, :-1])
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                tokens[:, 1:].reshape(-1),
                ignore_index=vocab.pad,
                label_smoothing=cfg.label_smoothing,
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(ii)
            count += len(ii)
        history["loss"].append(round(total / count, 4))
        if val is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            preds = decode_split(
                decoder, val[0], vocab, beam=1, alpha=0.0, max_tokens=model_cfg.max_len - 2
            )
            score = cider(preds, val[1])
            history["val_cider_greedy"][epoch] = round(score, 4)
            log(f"epoch {epoch}: loss {history['loss'][-1]:.3f}, val CIDEr-D (greedy) {score:.3f}")
            if score > best_score:
                best_score = score
                best_state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
                history["best_epoch"] = epoch
    if best_state is not None:
        decoder.load_state_dict(best_state)
    decoder.eval()
    state = {k: v.detach().numpy().copy() for k, v in decoder.state_dict().items()}
    return state, model_cfg, history


def load_decoder(state: dict[str, np.ndarray], model_cfg: CaptionerConfig):
    """A decoder module holding ``state`` (as it will load from float16 files)."""
    import torch

    decoder = build_decoder(model_cfg)
    decoder.load_state_dict(
        {k: torch.from_numpy(v.astype(np.float16).astype(np.float32)) for k, v in state.items()}
    )
    return decoder.eval()


def scene_captions(
    item, corpus: dict[str, list[str]], rng: np.random.Generator, n: int = 5
) -> list[str]:
    """Captions for an image that has a class but no sentences (NWPU, EuroSAT, DOTA crops):
    sentences of the caption-only sets about its concept when there are some, and sentences
    built from its class descriptions (``class_descriptions``), so captions name what is there
    in words of the scene."""
    from skylens.models.class_descriptions import describe

    phrases = list(describe(item.concept)) or [f"an area of {item.concept}"]
    built = [
        f"There is {phrases[0]}.",
        f"It is {phrases[-1]}.",
        f"This is {item.label_name or item.concept}.",
    ]
    pool = corpus.get(item.concept, [])
    picked = [pool[i] for i in rng.permutation(len(pool))[: n - 2]] if pool else []
    return (picked + built)[:n] if picked else built


class ItemGrids(GridFeatures):
    """Grids of items whose activations live in several per-source caches, computed once
    through the tower's head conv and kept in memory as float16 (about 125 KB an image)."""

    def __init__(self, feats: dict, rows: list[tuple[str, int]], tower: towers.ImageTower) -> None:
        super().__init__(None, tower)
        self.rows = rows
        self.cached = np.zeros((len(rows), towers.FEATURE_DIM, 7, 7), np.float16)
        for s in range(0, len(rows), 128):
            x = np.stack(
                [np.asarray(feats["blocks"][src][r, 0], np.float32) for src, r in rows[s : s + 128]]
            )
            with self._torch.no_grad():
                self.cached[s : s + len(x)] = self._head(
                    self._torch.from_numpy(x), self._conv
                ).numpy()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def views(self) -> int:
        return 1

    def grid(self, images: np.ndarray, views: np.ndarray):
        return self._torch.from_numpy(self.cached[np.asarray(images)].astype(np.float32))


def capped(indices: list[int], items, cap: int, seed: int) -> list[int]:
    """At most ``cap`` images a concept among the non-UCM ``indices`` (UCM images all kept),
    chosen by a seeded shuffle, so large classes do not drown the decoder's training."""
    rng = np.random.default_rng(seed)
    kept, seen = [], {}
    for i in rng.permutation(indices):
        it = items[int(i)]
        key = (it.source, it.concept)
        if it.source == "ucm" or seen.get(key, 0) < cap:
            kept.append(int(i))
            seen[key] = seen.get(key, 0) + 1
    return sorted(kept)


def run(
    data_root: Path,
    out: Path,
    cfg: CaptionTrainConfig,
    *,
    align_weights: Path | None = None,
    score_test: bool = True,
    cache: Path | None = None,
    log=print,
) -> dict:
    """Train on every source (``train/sources.py``); write weights, config and card to ``out``.

    UCM images keep their UCM-Captions sentences; NWPU, EuroSAT and DOTA images get sentences
    of their concept (``scene_captions``). UCM-Captions val picks the epoch and the decoding;
    the test split is scored once; held-out NWPU and EuroSAT images give the class agreement
    (a caption names the image's class) reported on the card.

    Args:
        data_root: the shared data folder (``ucm_captions/``, ``nwpu_resisc45_subset/``, ...).
        out: where ``skylens-lite-captioner.{safetensors,json,md}`` go.
        cfg: the recipe.
        align_weights: the default model's heads (a tuned head conv there changes the grid).
        score_test: score the test split once, after every choice, for the card.
        cache: unused (features are cached under ``SKYLENS_CACHE/train``); kept for callers.

    Returns:
        ``{"scores": ..., "config": ...}`` as recorded in the ``.json``.
    """
    import torch

    from skylens.models.default import DEFAULT_WEIGHTS, load_heads
    from skylens.train.align import item_features
    from skylens.train.sources import concept_captions, summary, training_items

    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    heads, _ = load_heads(Path(align_weights) if align_weights else DEFAULT_WEIGHTS)
    tower = towers.ImageTower(threads=cfg.threads, conv_head=heads.get("tower.conv_head"))
    items = training_items(Path(data_root), cfg.sources, towers.cache_dir() / "train")
    feats = item_features(items, tower)
    corpus = concept_captions(Path(data_root))
    rng = np.random.default_rng(cfg.seed)
    for it in items:
        if not it.captions:
            it.captions = scene_captions(it, corpus, rng)
    roles = {r: [i for i, it in enumerate(items) if it.role == r] for r in ("train", "val", "test")}
    roles["train"] = capped(roles["train"], items, cfg.max_per_concept, cfg.seed)
    ucm = {r: [i for i in roles[r] if items[i].source == "ucm"] for r in ("val", "test")}
    grids = {
        k: ItemGrids(feats, [feats["rows"][i] for i in v], tower)
        for k, v in (
            ("train", roles["train"]),
            ("val", ucm["val"]),
            ("test", ucm["test"]),
            ("heldout", [i for i in roles["val"] if items[i].source != "ucm"]),
        )
    }
    heldout_items = [items[i] for i in roles["val"] if items[i].source != "ucm"]
    train_caps = [items[i].captions for i in roles["train"]]
    val_caps = [items[i].captions for i in ucm["val"]]
    test_caps = [items[i].captions for i in ucm["test"]]
    vocab = Vocabulary.build((c for cs in train_caps for c in cs), cfg.min_count)
    longest = max(len(vocab.encode(c)) for cs in train_caps for c in cs)
    max_len = min(40, max(CaptionerConfig.max_len, longest + 2))
    log(f"{len(roles['train'])} training images; vocabulary: {len(vocab)} words")
    captions = caption_tensor(train_caps, vocab, max_len)
    state, model_cfg, history = train_decoder(
        grids["train"], captions, vocab, cfg, val=(grids["val"], val_caps), log=log
    )

    # beam width and length penalty: chosen on val only
    decoder = load_decoder(state, model_cfg)
    grid_scores: dict[str, float] = {}
    for beam in cfg.beams:
        for alpha in cfg.length_penalties if beam > 1 else (0.0,):
            preds = decode_split(
                decoder, grids["val"], vocab, beam=beam, alpha=alpha, max_tokens=max_len - 2
            )
            grid_scores[f"beam{beam}_alpha{alpha}"] = round(cider(preds, val_caps), 4)
    best = max(grid_scores, key=grid_scores.get)
    best_beam = int(best.split("_")[0][4:])
    best_alpha = float(best.split("alpha")[1])
    log(f"val CIDEr-D by decoding: {grid_scores} -> {best}")
    scores: dict = {
        "val_cider_by_decoding": grid_scores,
        "chosen_beam": best_beam,
        "chosen_length_penalty": best_alpha,
        "val_cider": grid_scores[best],
    }
    held_preds = decode_split(
        decoder, grids["heldout"], vocab, beam=best_beam, alpha=best_alpha, max_tokens=max_len - 2
    )
    scores["heldout_class_agreement"] = class_agreement(held_preds, heldout_items)
    scores["heldout_examples"] = [
        {
            "image": str(heldout_items[i].image.name),
            "class": heldout_items[i].label_name,
            "caption": held_preds[i],
        }
        for i in range(0, len(heldout_items), max(1, len(heldout_items) // 8))
    ]
    if score_test:
        from skylens.evaluate.captioning import CaptionEvaluator

        preds = decode_split(
            decoder, grids["test"], vocab, beam=best_beam, alpha=best_alpha, max_tokens=max_len - 2
        )
        result = CaptionEvaluator(("BLEU", "METEOR", "ROUGE-L", "CIDEr"))(preds, test_caps)
        scores["test"] = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in result["metrics"].items()
        }
        scores["test_examples"] = [
            {
                "id": items[ucm["test"][i]].image.stem,
                "prediction": preds[i],
                "reference": test_caps[i][0],
            }
            for i in (0, 70, 140)
        ]
    model_cfg = replace(
        model_cfg,
        length_penalty=best_alpha,
        image_tower=features_digest(tower),
        train={
            "recipe": asdict(cfg),
            "data": DATA_NOTE,
            "counts": summary(items),
            "history": history,
            "scores": scores,
            "seconds": round(time.time() - t0, 1),
            "threads": cfg.threads,
            "parameters": int(sum(v.size for v in state.values())),
        },
    )
    path = out / "skylens-lite-captioner.safetensors"
    save_captioner(path, state, model_cfg, vocab)
    log(json.dumps(scores, indent=1))
    return {"scores": scores, "config": asdict(model_cfg)}


def class_agreement(captions: list[str], items) -> dict:
    """Share of captions (percent) that name the image's class: a word of its concept or of
    its dataset class name appears in the caption (plural/singular folded)."""
    from skylens.models.answerer import object_key

    def keys(text: str) -> set[str]:
        return {object_key(w) for w in text.lower().replace("_", " ").split() if len(w) > 2}

    if not captions:
        return {"percent": None, "images": 0, "classes": 0, "classes_never_named": []}
    stop = {"area", "land", "field"}
    hits, by_class = [], {}
    for cap, it in zip(captions, items, strict=True):
        want = (keys(it.concept) | keys(it.label_name)) - stop or keys(it.concept)
        hit = bool(want & keys(cap))
        hits.append(hit)
        by_class.setdefault(f"{it.source}:{it.label_name}", []).append(hit)
    return {
        "percent": round(100 * float(np.mean(hits)), 2),
        "images": len(hits),
        "classes": len(by_class),
        "classes_never_named": sorted(k for k, v in by_class.items() if not any(v)),
    }


def _paths_key(paths: list[Path]) -> str:
    """Short digest of a list of image paths, so caches of different data never mix."""
    import hashlib

    return hashlib.sha256("\n".join(str(p.resolve()) for p in paths).encode()).hexdigest()[:10]


def write_card(out_dir: Path, result: dict, *, command: str) -> Path:
    """Markdown model card beside the captioner: what it is, data, recipe, measured scores."""
    cfg = result["config"]
    train = cfg["train"]
    scores = train["scores"]
    test = scores.get("test", {})
    n_params = train.get("parameters", "")
    lines = [
        "# skylens-lite captioner",
        "",
        'The default captioner of skylens (`skylens.load("default").caption_images(...)`): a',
        f"{cfg['layers']}-layer transformer decoder (width {cfg['d_model']}, {cfg['heads']} heads, "
        f"feed-forward {cfg['ffn']}{', ' + str(n_params) + ' parameters' if n_params else ''})",
        "attending over the 7x7x1280 feature grid (plus its mean) of the default model's frozen",
        "EfficientNet-Lite0 tower. Words come from",
        f"a {cfg['vocab_size']}-entry vocabulary of the training captions; decoding is beam search with",
        f"length penalty {cfg['length_penalty']} (chosen on val), greedy at beam 1.",
        "",
        "## Data",
        f"{train['data']}. Images per source and role: `{json.dumps(train.get('counts', {}))}`.",
        "UCM-Captions val (210 images) chose the epoch, the beam width and the length penalty; the",
        "test split (210 images) chose nothing and was scored once at the end.",
        "",
        "## Recipe",
        "```json",
        json.dumps(train["recipe"], indent=1),
        "```",
        f"Tower features digest: `{cfg['image_tower']}` (checked at load).",
        f"Training took {train['seconds']} s on a shared, loaded 2-core machine with "
        f"{train['threads']} thread(s); tower features come from the cache the alignment run fills.",
        "",
        "## Measured scores (coco-caption scale; CIDEr-D)",
        "| what | value |",
        "|---|---|",
        f"| val CIDEr-D, chosen decoding (beam {scores['chosen_beam']}) | {scores['val_cider']:.3f} |",
    ]
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        if test.get(key) is not None:
            lines.append(f"| test {key} | {test[key]:.4f} |")
    agree = scores.get("heldout_class_agreement") or {}
    if agree.get("images"):
        lines.append(
            f"| captions naming the image's class, {agree['images']} held-out NWPU + EuroSAT images "
            f"| {agree['percent']} % |"
        )
    lines += [
        "",
        "Val CIDEr-D by decoding: "
        + ", ".join(f"{k} {v:.3f}" for k, v in scores["val_cider_by_decoding"].items())
        + ".",
        "",
        "CIDEr-D is in-domain: UCM-Captions sentences are few and repetitive per scene class. The",
        "class agreement on held-out NWPU / EuroSAT images is the check of other imagery.",
        "",
        "## Retrain",
        f"`{command}` (seed {train['recipe']['seed']}; deterministic up to BLAS threading).",
        "",
        "## Cite",
        "Qu et al., Deep semantic understanding of high resolution remote sensing image (CITS 2016)",
        "for UCM-Captions; Xu et al., Show, Attend and Tell (ICML 2015); Vaswani et al., Attention",
        "Is All You Need (NeurIPS 2017); Tan & Le, EfficientNet (ICML 2019).",
    ]
    path = out_dir / "skylens-lite-captioner.md"
    path.write_text("\n".join(lines) + "\n")
    return path
