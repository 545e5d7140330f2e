"""``filter``: keep image-text pairs a model agrees with, captions of sane length in the wanted language.

RS5M (Zhang et al., IEEE TGRS 2024) filters web image-text pairs by the cosine similarity a
CLIP model gives them and keeps those above a threshold; LAION-5B (Schuhmann et al., 2022) does
the same at 0.28 with ViT-B/32. Here any loaded ``ImageTextEncoder`` (``skylens.load(name)``)
scores each text of kinds ``caption``/``tag_caption`` against its image; texts below
``min_score`` are dropped, then texts outside ``min_words``..``max_words`` words, then texts
whose language (``langdetect``, seeded) is not ``language`` (checked on texts of 4 words or
more: shorter ones carry too little evidence). A record left without a caption-like text is
removed, with the reason. Class prompts, QA and instructions pass untouched (they come from
annotations, not from the web). ``keep_splits`` keeps only records of those splits.

Scores are cosine similarities in [-1, 1]; their scale depends on the model, so choose the
threshold on a sample of training pairs (each removal note in ``removed.jsonl`` carries the
failing score), never on a test split.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from skylens.curate.images import record_pixels
from skylens.curate.pipeline import LOCAL, Runner, run_batches, step_info
from skylens.curate.records import Record
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.errors import InputError, MissingDependencyError

CHECKED_KINDS = ("caption", "tag_caption")


@functools.lru_cache(maxsize=4096)
def language_of(sentence: str) -> str:
    """Most likely language code of ``sentence`` (seeded langdetect), '' when undecidable."""
    try:
        from langdetect import DetectorFactory, LangDetectException, detect
    except ImportError:
        raise MissingDependencyError(
            "the language check needs langdetect: pip install skylens[curate]"
        ) from None
    DetectorFactory.seed = 0
    try:
        return detect(sentence)
    except LangDetectException:
        return ""


def _score_texts(records: list[Record], model: str) -> list[list[float | None]]:
    from skylens.models import load
    from skylens.models.base import ImageTextEncoder

    enc = load(model)
    enc.require(ImageTextEncoder)
    size = getattr(enc, "image_size", 224) or 224
    img = np.asarray(
        enc.encode_images([record_pixels(r, max_side=size * 2) for r in records]), np.float32
    )
    img /= np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    flat = [
        (i, k, t["text"])
        for i, r in enumerate(records)
        for k, t in enumerate(r["texts"])
        if t["kind"] in CHECKED_KINDS
    ]
    scores: list[list[float | None]] = [[None] * len(r["texts"]) for r in records]
    if flat:
        txt = np.asarray(enc.encode_texts([t for _, _, t in flat]), np.float32)
        txt /= np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
        for (i, k, _), v in zip(flat, txt, strict=True):
            scores[i][k] = float(img[i] @ v)
    return scores


def _text_problem(t: dict, score: float | None, min_score, min_words, max_words, language) -> str:
    if t["kind"] not in CHECKED_KINDS:
        return ""
    if min_score is not None and score is not None and score < min_score:
        return f"score {score:.3f} < {min_score}"
    n = len(t["text"].split())
    if n < min_words or n > max_words:
        return f"{n} words (allowed {min_words}..{max_words})"
    if language and n >= 4:
        lang = language_of(t["text"])
        if lang != language:
            return f"language '{lang or '?'}' is not '{language}'"
    return ""


def filter_batch(
    records: list[Record],
    *,
    model: str | None = None,
    min_score: float | None = None,
    min_words: int = 2,
    max_words: int = 77,
    language: str | None = "en",
    keep_splits: Sequence[str] | None = None,
) -> tuple[list[Record], list[dict]]:
    """Batch function (see ``pipeline.BatchFn``): records -> kept records, removal notes."""
    kept, removed = [], []
    if keep_splits:
        removed += [
            {"id": r["id"], "reason": f"split '{r['split']}' not kept"}
            for r in records
            if r["split"] not in keep_splits
        ]
        records = [r for r in records if r["split"] in keep_splits]
    scores = (
        _score_texts(records, model)
        if (model and min_score is not None and records)
        else [[None] * len(r["texts"]) for r in records]
    )
    for rec, rec_scores in zip(records, scores, strict=True):
        texts, problems = [], []
        for t, s in zip(rec["texts"], rec_scores, strict=True):
            why = _text_problem(t, s, min_score, min_words, max_words, language)
            (problems if why else texts).append(why or t)
        had = any(t["kind"] in CHECKED_KINDS for t in rec["texts"])
        if (
            had
            and not any(t["kind"] in CHECKED_KINDS for t in texts)
            and not rec.get("conversations")
        ):
            removed.append(
                {"id": rec["id"], "reason": "no caption passed the checks", "detail": problems[:3]}
            )
            continue
        kept.append({**rec, "texts": texts})
    return kept, removed


def filter_dataset(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    min_score: float | None = None,
    min_words: int = 2,
    max_words: int = 77,
    language: str | None = "en",
    keep_splits: Sequence[str] | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Write a new dataset of the records and texts that pass (see the module docstring).

    Args:
        dataset: curated dataset folder.
        out: new dataset folder.
        model: encoder name for the image-text score (needed with ``min_score``).
        min_score: smallest image-text cosine similarity kept.
        min_words, max_words: caption length bounds in words (77: CLIP's token budget, roughly).
        language: ISO 639-1 code captions must be in; None skips the check.
        keep_splits: only records of these splits are kept (e.g. ``["train"]``).
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    if min_score is not None and not model:
        raise InputError("--min-score needs a model to score with (--model NAME)")
    if min_words < 0 or max_words < max(min_words, 1):
        raise InputError(
            f"word bounds must satisfy 0 <= min_words <= max_words, got {min_words}..{max_words}"
        )
    src = open_dataset(dataset)
    fn = functools.partial(
        filter_batch, model=model, min_score=min_score, min_words=min_words,
        max_words=max_words, language=language, keep_splits=list(keep_splits) if keep_splits else None,
    )  # fmt: skip
    step = step_info("filter", dataset=dataset, model=model, min_score=min_score, min_words=min_words,
                     max_words=max_words, language=language, keep_splits=keep_splits)  # fmt: skip
    with DatasetWriter(out, step=step, parent=src, overwrite=overwrite) as w:
        run_batches(src.batches(batch_size), fn, w, total=src.count, desc="filter", runner=runner)
    return open_dataset(out)
