"""Train the default model's VQA heads on RSIVQA (``skylens train vqa``).

RSIVQA (Zheng et al., "Mutual attention inception network for remote sensing visual question
answering", IEEE TGRS 2022), UCM part: scene questions (``ucm_vqa.txt``) and presence, count and
location questions (``ucm_res.txt``). The split holds out whole images and is fixed: UCM-Captions'
Karpathy split (``ucm_captions/dataset.json``), because the default model's alignment heads were
trained on UCM-Captions train images; hyper-parameters are selected on the val images and the
test images are only scored.

Per question kind with training data, one small classifier (``skylens.models.answerer.AnswerHead``)
over the answers seen in training, reading the frozen model's features
(``skylens.models.answerer.head_input``): scene from the image's joint embedding; presence, count and
location from that plus the question's sentence embedding and the 7x7 map of similarity between
the feature map's cells and the asked object's words. The heads are fitted with AdamW on the
whole training set at once (a few hundred questions a kind: seconds on one thread); the hidden
width and weight decay are chosen by val accuracy, and the confidences calibrated on val by
temperature scaling. The zero-shot answerer's vocabularies and presence thresholds are fitted on
the same training questions; for scene and presence it competes with the trained head on val, and
the better of the two answers that kind.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skylens.errors import InputError
from skylens.models.answerer import (
    KINDS,
    AnswerHead,
    ImageFeatures,
    ZeroShotAnswerer,
    encoder_identity,
    feature_dims,
    head_input,
    image_features,
    object_key,
    question_embeddings,
    question_kind,
    question_object,
    save_answerer,
)

WEIGHTS_NAME = "skylens-lite-vqa.safetensors"
INPUTS = {
    # every scene question asks the same thing: the image alone decides. The joint embedding
    # (768-d) rather than the pooled tower features (1280-d): it is what the alignment heads
    # taught about UCM scenes, and the heads train faster on it.
    "scene": ["embedding"],
    "presence": ["embedding", "question", "object_map"],
    "count": ["embedding", "question", "object_map"],
    "location": ["embedding", "question", "object_map"],
}


@dataclass
class VQATrainConfig:
    """Recipe of ``skylens train vqa``; stored in the weights' card."""

    hidden_grid: tuple[int, ...] = (0, 64)  # 0 = linear softmax; chosen per kind on val
    # AdamW decoupled decay (per step, times lr), chosen per kind on val
    weight_decay_grid: tuple[float, ...] = (1e-2, 0.3, 3.0)
    input_dropout: float = 0.2  # on standardised inputs: a cheap regulariser for ~400 questions
    epochs: int = 150  # full-batch steps
    lr: float = 3e-3
    min_questions: int = 20  # a kind with fewer training questions gets no head
    # an object asked about fewer times in training counts as unseen: its count and location
    # questions are refused (presence ones go zero-shot) rather than answered from 1-4 examples
    min_object_questions: int = 5
    seed: int = 0
    threads: int = 2  # onnxruntime threads for the image features; the heads fit on one thread
    # (tiny matrices: on a busy 2-core machine a second torch thread made each fit 5-10x slower)


Log = Callable[[str], None]


def split_samples(dataset) -> dict[str, list[dict]]:
    """An RSIVQA dataset (``split="all"``) grouped by each image's split (train/val/test)."""
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for s in dataset:
        split = dataset.split_of(Path(str(s["image"])).stem)
        if split in out:
            out[split].append(s)
    return out


def extract_features(
    model, paths: Sequence[str], *, batch_size: int = 32, log: Log = print
) -> dict[str, ImageFeatures]:
    """Features of each image path (see ``skylens.models.answerer.image_features``)."""
    from skylens.datasets import load_image

    out: dict[str, ImageFeatures] = {}
    t0 = time.time()
    for i in range(0, len(paths), batch_size):
        chunk = list(paths[i : i + batch_size])
        for p, f in zip(chunk, image_features(model, [load_image(p) for p in chunk]), strict=True):
            out[p] = f
        if (i // batch_size) % 10 == 0:
            log(f"features {len(out)}/{len(paths)} images ({time.time() - t0:.0f} s)")
    return out


def build_inputs(
    model,
    samples: Sequence[dict],
    kind: str,
    feats: dict[str, ImageFeatures],
    text_cache: dict,
) -> np.ndarray:
    """Head inputs (N, dim) of ``samples`` of one kind."""
    inputs = INPUTS[kind]
    questions = [s["question"] for s in samples]
    objects = [question_object(q) or "" for q in questions]
    new_q = sorted({q for q in questions if ("q", q) not in text_cache})
    if new_q and "question" in inputs:
        for q, e in zip(new_q, question_embeddings(model, new_q), strict=True):
            text_cache[("q", q)] = e
    new_o = sorted({o for o in objects if o and ("o", o) not in text_cache})
    if new_o and "object_map" in inputs:
        for o, e in zip(new_o, model.encode_texts(new_o), strict=True):
            text_cache[("o", o)] = e
    rows = [
        head_input(
            inputs,
            feats[str(s["image"])],
            text_cache.get(("q", s["question"])),
            text_cache.get(("o", o)) if o else None,
        )
        for s, o in zip(samples, objects, strict=True)
    ]
    return np.stack(rows).astype(np.float32)


def fit_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, hidden: int, weight_decay: float, cfg
) -> dict[str, np.ndarray]:
    """Fit one head (full-batch AdamW, seeded); returns its tensors (mu, sd, w1, b1[, w2, b2])."""
    import torch

    torch.manual_seed(cfg.seed)
    mu = x.mean(0)
    sd = np.maximum(x.std(0), 1e-3)
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y.astype(np.int64))
    layers: list[torch.nn.Module] = [torch.nn.Dropout(cfg.input_dropout)]
    if hidden:
        layers += [torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU()]
        layers += [torch.nn.Linear(hidden, n_classes)]
    else:
        layers += [torch.nn.Linear(x.shape[1], n_classes)]
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    net.train()
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    t = {"mu": mu.astype(np.float32), "sd": sd.astype(np.float32)}
    t["w1"], t["b1"] = lin[0].weight.detach().numpy(), lin[0].bias.detach().numpy()
    if len(lin) > 1:
        t["w2"], t["b2"] = lin[1].weight.detach().numpy(), lin[1].bias.detach().numpy()
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def _accuracy(head: AnswerHead, x: np.ndarray, answers: Sequence[str]) -> tuple[float, np.ndarray]:
    from skylens.evaluate.vqa import normalize_answer

    if len(answers) == 0:
        return float("nan"), np.zeros(0)
    p = head.probabilities(x)
    pred = [head.answers[i] for i in p.argmax(1)]
    right = np.array(
        [normalize_answer(a) == normalize_answer(b) for a, b in zip(pred, answers, strict=True)]
    )
    return 100.0 * float(right.mean()), np.c_[p.max(1), right]


def _majority_baseline(train: Sequence[dict], test: Sequence[dict]) -> float:
    """Accuracy of answering each question with the most common training answer for its
    object (for its kind when the object is new): the blind baseline a head must beat."""
    from skylens.evaluate.vqa import normalize_answer

    overall = Counter(s["answer"] for s in train).most_common(1)[0][0]
    per_object: dict[str, Counter] = {}
    for s in train:
        key = object_key(question_object(s["question"]) or "")
        per_object.setdefault(key, Counter())[s["answer"]] += 1
    right = []
    for s in test:
        seen = per_object.get(object_key(question_object(s["question"]) or ""))
        guess = seen.most_common(1)[0][0] if seen else overall
        right.append(normalize_answer(guess) == normalize_answer(s["answer"]))
    return 100.0 * float(np.mean(right))


def _zero_shot_accuracy(
    zero_shot: ZeroShotAnswerer, samples: Sequence[dict], feats: dict[str, ImageFeatures]
) -> float:
    from skylens.evaluate.vqa import normalize_answer

    right = [
        normalize_answer(
            zero_shot.answer_embedded(feats[str(s["image"])].embedding, s["question"]).text
        )
        == normalize_answer(s["answer"])
        for s in samples
    ]
    return 100.0 * float(np.mean(right))


def _calibrate(head: AnswerHead, x: np.ndarray, truth: Sequence[int | None]) -> float:
    """Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks"): the
    temperature minimising val log-loss, folded into the last layer (answers do not change)."""
    keep = [i for i, t in enumerate(truth) if t is not None]
    if not keep:
        return 1.0
    z = head.logits(x[keep]).astype(np.float64)
    y = np.array([truth[i] for i in keep])

    def nll(temp: float) -> float:
        s = z / temp
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))

    grid = np.exp(np.linspace(np.log(0.25), np.log(100.0), 61))
    temp = float(grid[int(np.argmin([nll(t) for t in grid]))])
    last = "2" if "w2" in head.tensors else "1"
    head.tensors["w" + last] = (head.tensors["w" + last] / temp).astype(np.float32)
    head.tensors["b" + last] = (head.tensors["b" + last] / temp).astype(np.float32)
    return round(temp, 3)


def _low_confidence(conf_right: np.ndarray, min_n: int = 5) -> float:
    """The largest confidence below which val answers were right less than half the time."""
    if len(conf_right) < min_n:
        return 0.0
    best = 0.0
    for c in np.unique(np.quantile(conf_right[:, 0], np.linspace(0.1, 1.0, 10))):
        below = conf_right[conf_right[:, 0] < c]
        if len(below) >= min_n and below[:, 1].mean() < 0.5:
            best = float(c)
    return round(best, 4)


def train_answerer(
    model,
    splits: dict[str, list[dict]],
    feats: dict[str, ImageFeatures],
    cfg: VQATrainConfig,
    *,
    log: Log = print,
) -> tuple[dict[str, AnswerHead], dict]:
    """Fit a head per kind on ``splits["train"]``, select on ``val``, score ``test`` if given.

    Returns the heads and the card's config (vocabularies, zero-shot settings, scores).
    """
    import torch

    torch.set_num_threads(1)
    text_cache: dict = {}
    by_kind = {
        split: {k: [s for s in samples if question_kind(s["question"]) == k] for k in KINDS}
        for split, samples in splits.items()
    }
    zero_shot = ZeroShotAnswerer(model).fit(
        splits["train"], {p: f.embedding for p, f in feats.items()}
    )
    heads: dict[str, AnswerHead] = {}
    missing: dict[str, str] = {}
    zero_shot_kinds: dict[str, str] = {}
    for kind in KINDS:
        train = by_kind["train"][kind]
        answers = sorted({s["answer"] for s in train})
        if kind not in INPUTS or len(train) < cfg.min_questions or len(answers) < 2:
            why = (
                "this model's training data (RSIVQA-UCM) has no such questions"
                if not train
                else f"only {len(train)} training questions with {len(answers)} answers"
            )
            missing[kind] = (
                f"no trained {kind} head: {why}; use a VQA backend (hf:, openai:, gguf:)"
            )
            continue
        index = {a: i for i, a in enumerate(answers)}
        x_tr = build_inputs(model, train, kind, feats, text_cache)
        y_tr = np.array([index[s["answer"]] for s in train])
        val = by_kind.get("val", {}).get(kind, [])
        x_va = build_inputs(model, val, kind, feats, text_cache) if val else None
        asked = Counter(object_key(question_object(s["question"]) or "") for s in train)
        objects = (
            sorted(o for o, n in asked.items() if o and n >= cfg.min_object_questions)
            if "object_map" in INPUTS[kind]
            else []
        )
        trials, fitted = [], []
        for hidden in cfg.hidden_grid:
            for wd in cfg.weight_decay_grid:
                t = fit_head(x_tr, y_tr, len(answers), hidden, wd, cfg)
                head = AnswerHead(answers, INPUTS[kind], t, objects)
                acc = _accuracy(head, x_va, [s["answer"] for s in val])[0] if val else 0.0
                trials.append({"hidden": hidden, "weight_decay": wd, "val_accuracy": round(acc, 2)})
                fitted.append(head)
                log(f"{kind}: hidden {hidden}, weight decay {wd}: val accuracy {acc:.1f}")
        # best val accuracy; ties go to the simpler head (earlier in the grid)
        best = max(range(len(trials)), key=lambda i: (trials[i]["val_accuracy"], -i))
        choice, head = trials[best], fitted[best]
        scores = {
            "train_questions": len(train),
            "train_accuracy": round(_accuracy(head, x_tr, [s["answer"] for s in train])[0], 2),
            "majority_answer": Counter(s["answer"] for s in train).most_common(1)[0][0],
            "hidden": choice["hidden"],
            "weight_decay": choice["weight_decay"],
            "selection": trials,
        }
        if val:
            scores["temperature"] = _calibrate(head, x_va, [index.get(s["answer"]) for s in val])
            acc, conf_right = _accuracy(head, x_va, [s["answer"] for s in val])
            scores.update(val_questions=len(val), val_accuracy=round(acc, 2))
            head.low_confidence = _low_confidence(conf_right) if kind != "scene" else 0.0
        test = by_kind.get("test", {}).get(kind, [])
        if test:
            x_te = build_inputs(model, test, kind, feats, text_cache)
            acc = _accuracy(head, x_te, [s["answer"] for s in test])[0]
            scores.update(test_questions=len(test), test_accuracy=round(acc, 2))
            scores["test_baseline_accuracy"] = round(_majority_baseline(train, test), 2)
        head.scores = scores
        if kind in ("scene", "presence") and val:
            # the zero-shot path competes on val: with few training images it can generalise better
            zs_val = _zero_shot_accuracy(zero_shot, val, feats)
            scores["zero_shot_val_accuracy"] = round(zs_val, 2)
            if test:
                scores["zero_shot_test_accuracy"] = round(
                    _zero_shot_accuracy(zero_shot, test, feats), 2
                )
            if zs_val > scores["val_accuracy"]:
                why = (
                    f"zero-shot val accuracy {zs_val:.1f} beat the trained head's "
                    f"{scores['val_accuracy']:.1f}"
                )
                zero_shot_kinds[kind] = {"reason": why, "scores": scores}
                log(f"{kind}: {why}; answering {kind} zero-shot")
                continue
        heads[kind] = head
        log(f"{kind}: {json.dumps({k: v for k, v in scores.items() if k != 'selection'})}")
    config = {
        "format": "skylens-vqa/1",
        "encoder": encoder_identity(model),
        "dims": feature_dims(model),
        "missing_heads": missing,
        "zero_shot_kinds": zero_shot_kinds,
        "zero_shot": zero_shot.settings(),
        "recipe": asdict(cfg),
    }
    return heads, config


def run(
    data_root: Path,
    out_dir: Path,
    cfg: VQATrainConfig | None = None,
    *,
    model=None,
    log: Log = print,
) -> dict:
    """Train on ``data_root/rsivqa_ucm`` with UCM-Captions' split; write weights, JSON and card.

    Args:
        data_root: folder holding ``rsivqa_ucm/`` and ``ucm_captions/`` (dataset.json, images/).
        out_dir: where ``skylens-lite-vqa.safetensors``, ``.json`` and ``.md`` are written.
        cfg: the recipe (default ``VQATrainConfig()``).
        model: the encoder whose features the heads read (default: the embedded default model
            on ``cfg.threads`` threads).

    Returns:
        The card's config (scores per kind included).
    """
    from skylens.datasets import get_dataset

    cfg = cfg or VQATrainConfig()
    t0 = time.time()
    root = Path(data_root)
    vqa_root, ucm = root / "rsivqa_ucm", root / "ucm_captions"
    for need in (vqa_root, ucm / "dataset.json", ucm / "images"):
        if not need.exists():
            raise InputError(f"{need} not found: --data must hold rsivqa_ucm/ and ucm_captions/")
    if model is None:
        from skylens.models.default import SkylensLite

        model = SkylensLite(threads=cfg.threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = get_dataset(
            "rsivqa",
            vqa_root,
            split="all",
            image_dir=ucm / "images",
            image_splits=ucm / "dataset.json",
        )
    for w in caught:
        log(str(w.message))
    splits = split_samples(ds)
    log(", ".join(f"{k}: {len(v)} questions" for k, v in splits.items()))
    paths = sorted({str(s["image"]) for v in splits.values() for s in v})
    feats = extract_features(model, paths, log=log)
    heads, config = train_answerer(model, splits, feats, cfg, log=log)
    config["data"] = {
        "dataset": "RSIVQA, UCM part (rsivqa_ucm/ucm_vqa.txt, ucm_res.txt)",
        "split": "UCM-Captions dataset.json: train images to fit, val images to select, "
        "test images to score",
        "questions": {k: len(v) for k, v in splits.items()},
        "images": {k: len({str(s["image"]) for s in v}) for k, v in splits.items()},
        "malformed_lines_skipped": ds.malformed,
    }
    config["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out_dir)
    path = save_answerer(out_dir / WEIGHTS_NAME, heads, config)
    write_card(path.with_suffix(".md"), heads, config)
    log(f"wrote {path} in {config['seconds']} s")
    return {**config, "heads": {k: h.scores for k, h in heads.items()}}


def write_card(path: Path, heads: dict[str, AnswerHead], config: dict, command: str = "") -> Path:
    """Markdown model card: what the heads are, data, split, recipe and measured scores."""
    enc = config["encoder"]
    rows = [
        f"| {k} | {h.scores.get('train_questions', '')} | {h.scores.get('val_accuracy', '')} | "
        f"{h.scores.get('test_questions', '')} | {h.scores.get('test_accuracy', '')} | "
        f"{h.scores.get('test_baseline_accuracy', '')} | "
        f"{len(h.answers)} | {h.scores.get('hidden')} / {h.scores.get('weight_decay')} |"
        for k, h in heads.items()
    ]
    lines = [
        "# skylens-lite VQA heads",
        "",
        'Small answer classifiers that let the embedded default model (`skylens.load("default")`)',
        "answer remote-sensing questions (`model.answer(image, question)`, `skylens ask`). They read",
        "the frozen model's features: the joint image embedding (skylens-lite's alignment heads over",
        "EfficientNet-Lite0), the MiniLM embedding of the question, and the 7x7 map of similarity",
        "between the feature map's cells and the asked object's words in the joint space.",
        "See `skylens/train/vqa.py` for the recipe and `skylens/models/answerer.py` for answering.",
        "",
        "## Data and split",
        f"{config.get('data', {}).get('dataset', '')}. Split by image: "
        f"{config.get('data', {}).get('split', '')}.",
        f"Questions: {config.get('data', {}).get('questions', {})}; images: "
        f"{config.get('data', {}).get('images', {})}; malformed lines skipped: "
        f"{config.get('data', {}).get('malformed_lines_skipped', '')}.",
        "",
        "## Held-out accuracy (%, exact match after VQA normalisation)",
        "| kind | train questions | val accuracy | test questions | test accuracy | "
        "blind baseline, test | answers | hidden / weight decay |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Blind baseline: each question answered with the most common training answer for its",
        "object (no image). Answers are limited to those seen in training for each kind. Count",
        "and location answers come with their confidence; below a head's `low_confidence` (val",
        "accuracy under 50%) the answer's reason says so. Presence questions about objects asked fewer than "
        f"{config.get('recipe', {}).get('min_object_questions', '')} times in training use the",
        "zero-shot path; count and location questions about such objects are refused. Objects",
        "per head: "
        + "; ".join(f"{k}: {', '.join(h.objects) or 'any'}" for k, h in heads.items())
        + ".",
        "",
        "## Kinds answered zero-shot",
        *[
            f"- {k}: {v['reason']} (zero-shot test accuracy "
            f"{v['scores'].get('zero_shot_test_accuracy', '')}; trained head's "
            f"{v['scores'].get('test_accuracy', '')})"
            for k, v in config.get("zero_shot_kinds", {}).items()
        ],
        "",
        "## Kinds without a head",
        *[f"- {k}: {why}" for k, why in config.get("missing_heads", {}).items()],
        "",
        "## Checked at load",
        f"Model `{enc.get('name')}` version `{enc.get('version')}`, image tower "
        f"`{enc.get('image_tower', '')}`, text tower `{enc.get('text_tower', '')}`; feature widths "
        f"{config.get('dims')}. Heads trained on other features are refused (ModelError).",
        "",
        "## Recipe",
        "```json",
        json.dumps(config.get("recipe", {}), indent=1),
        "```",
        f"Training took {config.get('seconds', '')} s (feature extraction included) on a shared,",
        "loaded 2-core machine. Retrain: `skylens train vqa --data ../shared/data --out "
        "src/skylens/weights`" + (f" ({command})" if command else "") + ".",
        "",
        "## Cite",
        "Zheng et al., Mutual attention inception network for remote sensing visual question",
        "answering, IEEE TGRS 2022 (RSIVQA). Qu et al. 2016 (UCM-Captions split).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
