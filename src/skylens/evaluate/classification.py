"""Zero-shot (or any) scene classification accuracy from class scores.

What the remote-sensing CLIP papers report for zero-shot scene classification (RemoteCLIP,
GeoRSCLIP, SkyCLIP on UCM, AID, RESISC45, EuroSAT, ...): top-1 accuracy, with the protocol of
CLIP (Radford et al. 2021) and open_clip's ``zero_shot_metadata``/``zeroshot_classifier``: the
image is assigned the class whose prompt-ensembled text embedding scores highest. Also reported
here: top-5, accuracy per class, mean per-class accuracy (the "balanced accuracy" some benchmarks
prefer when classes are unbalanced) and the confusion matrix.

Ties between class scores are broken by class order (the first class wins), as ``argmax`` and a
stable descending sort do, so top-1 accuracy equals the confusion matrix's trace over its total.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skylens.errors import InputError
from skylens.evaluate.base import Evaluator


class ZeroShotEvaluator(Evaluator):
    """Top-k accuracy, per-class accuracy and confusion matrix (percent) from class scores.

    Args:
        class_names: the C class names, in the column order of the scores.
        top_k: the k of top-k accuracy; a k larger than C is reported as None.

    Call with ``(scores (N, C) logits/similarities/probabilities, labels (N,) class indices or
    names)``.
    """

    task = "classification"
    primary_metric = "top1"
    greater_is_better = True
    units = "percent"

    def __init__(self, class_names: Sequence[str], top_k: Sequence[int] = (1, 5)) -> None:
        names = [str(n) for n in class_names]
        if len(names) < 2:
            raise InputError("classification needs at least two class names")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"class names repeat: {dup}")
        if not top_k or any(int(k) < 1 for k in top_k):
            raise InputError(f"top_k must hold positive integers, got {list(top_k)}")
        self.class_names = names
        self.top_k = tuple(sorted({int(k) for k in top_k}))

    def __call__(
        self, scores: np.ndarray, labels: Sequence[int | str] | np.ndarray
    ) -> dict[str, Any]:
        """Score predictions.

        Args:
            scores: (N, C) a score per image and class; higher means more likely.
            labels: (N,) true class of each image, as an index into ``class_names`` or a name.
        """
        n_cls = len(self.class_names)
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != n_cls:
            raise InputError(
                f"scores must be (N, {n_cls}) for {n_cls} class names, got shape {s.shape}"
            )
        if not np.isfinite(s).all():
            raise InputError("scores hold NaN or infinite values: check the model's outputs")
        y = self._label_indices(labels, len(s))
        n = len(s)
        true_score = s[np.arange(n), y]
        # rank of the true class under a stable descending sort: higher scores, then equal
        # scores of earlier classes
        before = np.arange(n_cls)[None, :] < y[:, None]
        rank = np.count_nonzero(s > true_score[:, None], axis=1) + np.count_nonzero(
            (s == true_score[:, None]) & before, axis=1
        )
        pred = s.argmax(axis=1)
        metrics: dict[str, float | None] = {}
        for k in self.top_k:
            metrics[f"top{k}"] = 100.0 * float(np.mean(rank < k)) if k <= n_cls and n else None
        confusion = np.zeros((n_cls, n_cls), np.int64)
        np.add.at(confusion, (y, pred), 1)
        support = confusion.sum(axis=1)
        per_class = {
            name: (100.0 * confusion[c, c] / support[c] if support[c] else None)
            for c, name in enumerate(self.class_names)
        }
        present = [v for v in per_class.values() if v is not None]
        metrics["mean_per_class"] = float(np.mean(present)) if present else None
        details = {
            "class_names": self.class_names,
            "per_class_accuracy": per_class,
            "support": {name: int(support[c]) for c, name in enumerate(self.class_names)},
            "confusion_matrix": confusion.tolist(),
            "confusion_axes": "rows: true class, columns: predicted class (class_names order)",
            "unavailable": {
                f"top{k}": f"top-{k} needs at least {k} classes; there are {n_cls}"
                for k in self.top_k
                if k > n_cls
            },
        }
        counts = {"samples": n, "classes": n_cls, "classes_present": int((support > 0).sum())}
        return self._result(metrics, counts, details)

    def _label_indices(self, labels, n: int) -> np.ndarray:
        labels = list(labels) if not isinstance(labels, np.ndarray) else labels.tolist()
        if len(labels) != n:
            raise InputError(f"{n} score rows but {len(labels)} labels")
        lookup = {name: i for i, name in enumerate(self.class_names)}
        out = np.empty(n, np.int64)
        for i, lab in enumerate(labels):
            if isinstance(lab, str):
                if lab not in lookup:
                    raise InputError(f"label {lab!r} of sample {i} is not one of the class names")
                out[i] = lookup[lab]
            else:
                idx = int(lab)
                if not 0 <= idx < len(self.class_names):
                    raise InputError(
                        f"label {idx} of sample {i} is outside 0..{len(self.class_names) - 1}"
                    )
                out[i] = idx
        return out


def zero_shot_scores(image_embeddings: np.ndarray, class_embeddings: np.ndarray) -> np.ndarray:
    """(N, C) cosine similarities between images and class (prompt-ensemble) embeddings."""
    img = np.asarray(image_embeddings, np.float32)
    cls = np.asarray(class_embeddings, np.float32)
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    cls = cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-12)
    return img @ cls.T
