"""Zero-shot scene classification from class names and prompt templates (``skylens classify``).

Class embeddings are the normalised mean of each name under a set of remote-sensing prompt
templates (the prompt-ensemble of CLIP, Radford et al. 2021); the model may add its own zero-shot
knowledge (``ImageTextEncoder.text_classifier``; the default adds scene descriptions from
``models/class_descriptions.py``).

Scores are honest: probabilities use the model's calibrated temperature when it has one
(``zero_shot_temperature``, fitted on held-out validation images; Guo et al. 2017) and a result
is marked ``unsure`` when the best label's probability leads the second's by less than the
model's ``unsure_margin`` (both in the model card).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skylens.errors import InputError, SkylensError
from skylens.imagery import iter_image_files
from skylens.models.base import ImageTextEncoder
from skylens.tasks.common import load_scene_rgb

MAX_LABELS = 1000


def parse_labels(
    labels: str | Sequence[str] | None = None, labels_file: str | Path | None = None
) -> list[str]:
    """Class names from "a,b,c" or a file with one name per line (blank lines and # comments skipped)."""
    names: list[str] = []
    if labels_file is not None:
        path = Path(labels_file)
        if not path.is_file():
            raise InputError(f"{path}: labels file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text; one class name a line") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
        if "\x00" in text:
            raise InputError(f"{path}: a binary file, not text; one class name a line")
        names += [ln.strip() for ln in text.splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    if labels:
        names += [n.strip() for n in (labels.split(",") if isinstance(labels, str) else labels)]
    names = [n for n in names if n]
    seen: set[str] = set()
    names = [n for n in names if not (n.lower() in seen or seen.add(n.lower()))]
    if len(names) < 2:
        raise InputError(
            "zero-shot classification needs at least two class names (--labels 'a,b,c')"
        )
    if len(names) > MAX_LABELS:
        raise InputError(f"{len(names)} class names; the limit is {MAX_LABELS}")
    return names


@dataclass
class Classification:
    source: str
    labels: list[str]  # top labels, best first
    scores: list[float]  # softmax probabilities over all classes, for the top labels, in [0, 1]
    error: str | None = None
    unsure: bool = False  # the best label is not clearly ahead of the second (see module doc)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "labels": self.labels,
            "scores": self.scores,
            "unsure": self.unsure,
            "error": self.error,
        }


V1_TEMPERATURE = 0.01  # for models without a calibrated temperature


def model_temperature(model) -> float:
    """The model's calibrated zero-shot temperature, or the historical 0.01."""
    t = getattr(model, "zero_shot_temperature", None)
    return float(t) if t else V1_TEMPERATURE


def probabilities(
    model: ImageTextEncoder,
    images: Sequence[np.ndarray],
    weights: np.ndarray,
    temperature: float | None = None,
) -> np.ndarray:
    """(N, C) class probabilities of RGB uint8 images against zero-shot ``weights``."""
    t = model_temperature(model) if temperature is None else temperature
    logits = model.encode_images(images) @ weights.T / t
    logits -= logits.max(1, keepdims=True)
    prob = np.exp(logits)
    return np.clip(prob / prob.sum(1, keepdims=True), 0.0, 1.0)


def is_unsure(prob: np.ndarray, margin: float) -> bool:
    """Whether the best probability leads the second by less than ``margin``."""
    if margin <= 0 or len(prob) < 2:
        return False
    top2 = np.sort(prob)[-2:]
    return bool(top2[1] - top2[0] < margin)


def zero_shot_weights(
    model: ImageTextEncoder, class_names: Sequence[str], templates: Sequence[str] | None = None
) -> np.ndarray:
    """(C, D) class embeddings for ``class_names`` (templates default to the model's own)."""
    if templates is None:
        return model.text_classifier(class_names)
    return model.text_classifier(class_names, templates)


def classify_arrays(
    model: ImageTextEncoder,
    images: Sequence[np.ndarray],
    class_names: Sequence[str],
    *,
    top: int = 3,
    weights: np.ndarray | None = None,
    temperature: float | None = None,
) -> list[tuple[list[str], list[float]]]:
    """Top-``top`` (label, probability) for RGB uint8 arrays (the model's calibrated
    temperature unless ``temperature`` is given); ``InputError`` unless top >= 1."""
    _check_top(top)
    w = zero_shot_weights(model, class_names) if weights is None else weights
    return [_top(p, class_names, top) for p in probabilities(model, images, w, temperature)]


def _check_top(top: int) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be a positive number of labels, got {top!r}")


def classify_images(
    model: ImageTextEncoder,
    images: Sequence[np.ndarray],
    class_names: Sequence[str],
    *,
    sources: Sequence[str],
    top: int = 3,
    weights: np.ndarray | None = None,
) -> list[Classification]:
    """``Classification`` of RGB uint8 arrays named by ``sources``: calibrated probabilities
    and the model's ``unsure`` verdict (what the CLI, the service and chat report alike)."""
    _check_top(top)
    w = zero_shot_weights(model, class_names) if weights is None else weights
    margin = float(getattr(model, "unsure_margin", 0.0) or 0.0)
    out = []
    for src, p in zip(sources, probabilities(model, images, w), strict=True):
        lab, sc = _top(p, class_names, top)
        out.append(Classification(str(src), lab, sc, unsure=is_unsure(p, margin)))
    return out


def _top(p: np.ndarray, class_names: Sequence[str], top: int) -> tuple[list[str], list[float]]:
    order = np.argsort(-p)[: max(1, min(top, len(class_names)))]
    return [class_names[i] for i in order], [round(float(p[i]), 4) for i in order]


def classify(
    model: ImageTextEncoder,
    sources: Sequence[str | Path],
    class_names: Sequence[str],
    *,
    top: int = 3,
    bands: str | None = None,
    batch_size: int = 32,
    progress=None,
) -> list[Classification]:
    """Classify whole images (files or folders); unreadable files are reported, not fatal."""
    model.require(ImageTextEncoder)
    weights = zero_shot_weights(model, class_names)
    files = list(iter_image_files([Path(s) for s in sources]))
    results: list[Classification] = []
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        sources, arrays = [s for s, _ in pending], [a for _, a in pending]
        results.extend(
            classify_images(model, arrays, class_names, sources=sources, top=top, weights=weights)
        )
        if progress:
            progress(len(pending))
        pending.clear()

    for path in files:
        try:
            rgb = load_scene_rgb(path, bands=bands)
        except SkylensError as exc:
            results.append(Classification(str(path), [], [], error=str(exc)))
            if progress:
                progress(1)
            continue
        pending.append((str(path), rgb))
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return results
