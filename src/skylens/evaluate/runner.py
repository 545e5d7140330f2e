"""Run a model on a benchmark dataset and score it: the engine of ``skylens eval``.

Each ``run_*`` function checks that the model has the capability the evaluation needs *before*
any work (``CapabilityError``), streams images through the model in batches, scores with the
evaluator objects of this package, and returns the evaluator's dict plus ``meta``: the keywords
``write_report`` takes (model, weights digest, dataset, split, sample counts, date, command).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from skylens.errors import CapabilityError, InputError
from skylens.models.base import ImageTextEncoder, Model

TASKS = ("retrieval", "classify", "caption", "vqa")
Progress = Callable[[int], None]


def _embedded_batches(
    model: ImageTextEncoder, dataset, split: str, batch_size: int, progress: Progress | None
):
    """Yield (sample indices, image embeddings) over the whole dataset, refusing an empty one."""
    from skylens.datasets import load_image

    n = len(dataset)
    if n == 0:
        raise InputError(f"dataset {getattr(dataset, 'name', '')} split '{split}' has no samples")
    for s in range(0, n, batch_size):
        idx = range(s, min(s + batch_size, n))
        yield idx, model.encode_images([load_image(dataset[i]) for i in idx])
        if progress:
            progress(len(idx))


def _meta(model: Model, dataset, split: str, seconds: float, **samples) -> dict:
    """Report metadata (``write_report`` keywords) for a run."""
    in_cli = bool(sys.argv) and Path(sys.argv[0]).name == "skylens"
    return {
        "model": model.name,
        "weights_digest": model.version,
        "dataset": getattr(dataset, "name", type(dataset).__name__),
        "split": split,
        "samples": samples,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "skylens " + " ".join(sys.argv[1:]) if in_cli else None,
        "extra": {"root": str(getattr(dataset, "root", "")), "seconds": round(seconds, 2)},
    }


def require(model: Model, task: str) -> None:
    """Refuse, before any work, a model that cannot do ``task``."""
    if task not in TASKS:
        raise InputError(f"unknown evaluation '{task}': choose one of {', '.join(TASKS)}")
    if task in ("retrieval", "classify") and not isinstance(model, ImageTextEncoder):
        raise CapabilityError(
            f"model '{model.name}' is not an image-text encoder; '{task}' needs one"
        )
    if task == "caption" and not callable(getattr(model, "caption_images", None)):
        raise CapabilityError(
            f"model '{model.name}' has no captioner; 'caption' evaluation needs one"
        )
    if task == "vqa" and not callable(getattr(model, "answer", None)):
        raise CapabilityError(
            f"model '{model.name}' cannot answer questions; 'vqa' evaluation needs an answerer"
        )


def run_retrieval(
    model: ImageTextEncoder,
    dataset,
    *,
    split: str,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict:
    """Image<->text retrieval over every (image, captions) sample of ``dataset``."""
    from skylens.evaluate.retrieval import RetrievalEvaluator

    require(model, "retrieval")
    t0 = time.perf_counter()
    img_emb, captions, owner = [], [], []
    for idx, emb in _embedded_batches(model, dataset, split, batch_size, progress):
        img_emb.append(emb)
        for i in idx:
            caps = dataset[i]["captions"]
            captions += caps
            owner += [i] * len(caps)
    n = len(dataset)
    result = RetrievalEvaluator()(
        np.concatenate(img_emb), model.encode_texts(captions), np.array(owner)
    )
    meta = _meta(model, dataset, split, time.perf_counter() - t0, images=n, captions=len(captions))
    return {**result, "meta": meta}


def run_classify(
    model: ImageTextEncoder,
    dataset,
    *,
    split: str,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict:
    """Zero-shot scene classification from the dataset's readable class names."""
    from skylens.evaluate.classification import ZeroShotEvaluator

    require(model, "classify")
    classes = list(dataset.classes)
    t0 = time.perf_counter()
    weights = model.text_classifier(classes)
    scores, labels = [], []
    for idx, emb in _embedded_batches(model, dataset, split, batch_size, progress):
        scores.append(emb @ weights.T)
        labels += [dataset[i]["label"] for i in idx]
    n = len(dataset)
    result = ZeroShotEvaluator(classes)(np.concatenate(scores), np.array(labels))
    return {
        **result,
        "meta": _meta(
            model, dataset, split, time.perf_counter() - t0, images=n, classes=len(classes)
        ),
    }


def run_caption(
    model: Model,
    dataset,
    *,
    split: str,
    batch_size: int = 32,
    beam: int = 3,
    progress: Progress | None = None,
) -> dict:
    """Caption every image of ``dataset`` and score against its reference sentences."""
    from skylens.datasets import load_image
    from skylens.evaluate.captioning import CaptionEvaluator

    require(model, "caption")
    n = len(dataset)
    if n == 0:
        raise InputError(f"dataset {getattr(dataset, 'name', '')} split '{split}' has no samples")
    t0 = time.perf_counter()
    predictions, references = {}, {}
    for s in range(0, n, batch_size):
        idx = range(s, min(s + batch_size, n))
        caps = model.caption_images([load_image(dataset[i]) for i in idx], beam=beam)
        for i, cap in zip(idx, caps, strict=True):
            sid = str(dataset[i].get("id", i))
            predictions[sid] = cap
            references[sid] = list(dataset[i]["captions"])
        if progress:
            progress(len(idx))
    seconds = time.perf_counter() - t0
    result = CaptionEvaluator()(predictions, references)
    result.setdefault("details", {})["examples"] = [
        {"id": k, "prediction": predictions[k], "reference": references[k][0]}
        for k in list(predictions)[:5]
    ]
    result["details"]["captions_per_s"] = round(n / max(seconds, 1e-9), 2)
    meta = _meta(model, dataset, split, time.perf_counter() - t0, images=n, beam=beam)
    return {**result, "meta": meta}


def run_vqa(
    model: Model,
    dataset,
    *,
    split: str,
    progress: Progress | None = None,
) -> dict:
    """Answer every question of ``dataset``; accuracy overall and per question type.

    A question the model declines ("cannot answer with this model") counts as wrong; how many
    were declined is reported beside the accuracy.
    """
    from skylens.datasets import load_image
    from skylens.evaluate.vqa import VQAEvaluator

    require(model, "vqa")
    n = len(dataset)
    if n == 0:
        raise InputError(f"dataset {getattr(dataset, 'name', '')} split '{split}' has no samples")
    t0 = time.perf_counter()
    preds, truths, types, declined = [], [], [], 0
    images: dict[str, np.ndarray] = {}
    for i in range(n):
        sample = dataset[i]
        key = str(sample.get("image"))
        if key not in images:
            images = {key: load_image(sample)}  # questions of one image are consecutive
        ans = model.answer(images[key], sample["question"])
        declined += not getattr(ans, "supported", True)
        preds.append(ans.text if hasattr(ans, "text") else str(ans))
        truths.append(sample["answer"])
        types.append(sample.get("question_type") or "all")
        if progress:
            progress(1)
    seconds = time.perf_counter() - t0
    result = VQAEvaluator()(preds, truths, question_types=types)
    result.setdefault("details", {})["declined"] = declined
    result["details"]["answers_per_s"] = round(n / max(seconds, 1e-9), 2)
    meta = _meta(model, dataset, split, seconds, questions=n)
    return {**result, "meta": meta}


def run(task: str, model: Model, dataset, *, split: str, progress: Progress | None = None) -> dict:
    """Dispatch to the ``run_*`` function for ``task`` (capability checked first)."""
    require(model, task)
    runners = {
        "retrieval": run_retrieval,
        "classify": run_classify,
        "caption": run_caption,
        "vqa": run_vqa,
    }
    return runners[task](model, dataset, split=split, progress=progress)
