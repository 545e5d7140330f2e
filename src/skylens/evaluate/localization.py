"""Localization quality: IoU of predicted and true regions, hit rate, accuracy@IoU, mean IoU.

Phrase grounding in remote sensing is scored like visual grounding (RSVG: Zhan et al. 2023,
"RSVG: Exploring Data and Models for Visual Grounding on Remote Sensing Data", IEEE TGRS;
DIOR-RSVG: accuracy at IoU 0.5 and mean IoU over samples) and referring segmentation (RRSIS:
Yuan et al. 2024: mean IoU and cumulative IoU, the total intersection over the total union).

A region is one of:

* a **box** ``(x0, y0, x1, y1)`` in any consistent unit (pixels, metres), ``x1 > x0``;
* a **tile set**: a ``set``/``frozenset`` of tile ids (e.g. chip ids that ``localize`` marks),
  IoU = shared tiles over tiles in either set;
* a **mask**: a boolean numpy array, all of one shape per sample.

Per sample, ``prediction`` is a region or a list of regions ranked best first (only the best is
scored, as grounding benchmarks do), ``target`` a region or a list of true regions. The sample's
IoU is that of the best predicted region with the true region it overlaps most; it is a *hit*
when that IoU is above zero (the best region touches a true region).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skylens.errors import InputError
from skylens.evaluate.base import Evaluator

Region = Any  # box tuple, set of tile ids, or boolean mask


def iou(a: Region, b: Region) -> float:
    """Intersection over union of two regions of the same kind (0..1)."""
    inter, union = _overlap(a, b)
    return inter / union if union > 0 else 0.0


def _kind(r: Region) -> str:
    if isinstance(r, (set, frozenset)):
        return "tiles"
    if isinstance(r, np.ndarray) and r.dtype == bool:
        return "mask"
    if isinstance(r, (tuple, list, np.ndarray)) and len(r) == 4:
        return "box"
    raise InputError(
        f"a region must be a box (x0, y0, x1, y1), a set of tile ids or a boolean mask, got {r!r:.80}"
    )


def _overlap(a: Region, b: Region) -> tuple[float, float]:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        raise InputError(f"cannot compare a {ka} with a {kb}")
    if ka == "tiles":
        return float(len(a & b)), float(len(a | b))
    if ka == "mask":
        if a.shape != b.shape:
            raise InputError(f"mask shapes differ: {a.shape} vs {b.shape}")
        return float(np.count_nonzero(a & b)), float(np.count_nonzero(a | b))
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    for x0, y0, x1, y1 in ((ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1)):
        if x1 < x0 or y1 < y0:
            raise InputError(f"box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0")
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter, union


def _as_list(r: Region | Sequence[Region]) -> list[Region]:
    """One region or a list of regions -> list (a 4-number tuple is one box)."""
    if isinstance(r, (set, frozenset)) or (isinstance(r, np.ndarray) and r.dtype == bool):
        return [r]
    if (
        isinstance(r, (tuple, list, np.ndarray))
        and len(r) == 4
        and all(isinstance(v, (int, float, np.integer, np.floating)) for v in r)
    ):
        return [r]
    return list(r)


class LocalizationEvaluator(Evaluator):
    """Mean IoU, hit rate, accuracy at IoU thresholds and cumulative IoU (percent).

    Args:
        thresholds: IoU cut-offs for ``acc@t`` (grounding papers use 0.5; often also 0.25,
            0.7 ...).

    Call with ``(predictions, targets)``, one entry per sample (see the module docstring). A
    sample with no predicted region scores IoU 0 and no hit.
    """

    task = "localization"
    primary_metric = "mean_iou"
    greater_is_better = True
    units = "percent"

    def __init__(self, thresholds: Sequence[float] = (0.5,)) -> None:
        if any(not 0.0 < float(t) <= 1.0 for t in thresholds):
            raise InputError(f"IoU thresholds must be in (0, 1], got {list(thresholds)}")
        self.thresholds = tuple(sorted(float(t) for t in thresholds))

    def __call__(
        self,
        predictions: Sequence[Region | Sequence[Region]],
        targets: Sequence[Region | Sequence[Region]],
    ) -> dict[str, Any]:
        """Score predicted regions against true regions (see the class docstring)."""
        if len(predictions) != len(targets):
            raise InputError(f"{len(predictions)} predictions but {len(targets)} targets")
        if not targets:
            raise InputError("no samples to evaluate")
        ious, hits = [], []
        inter_sum = union_sum = 0.0
        kinds = set()
        for i, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
            truths = _as_list(target)
            if not truths:
                raise InputError(f"sample {i} has no true region")
            preds = _as_list(pred)
            if not preds:
                ious.append(0.0)
                hits.append(False)
                union_sum += _overlap(truths[0], truths[0])[1]  # nothing predicted: union = truth
                continue
            best = preds[0]
            kinds.add(_kind(best))
            overlaps = [_overlap(best, t) for t in truths]
            values = [x / u if u > 0 else 0.0 for x, u in overlaps]
            j = int(np.argmax(values))
            ious.append(values[j])
            hits.append(any(x > 0 for x, _ in overlaps))
            inter_sum += overlaps[j][0]
            union_sum += overlaps[j][1]
        arr = np.asarray(ious)
        metrics: dict[str, float] = {
            "mean_iou": 100.0 * float(arr.mean()),
            "hit_rate": 100.0 * float(np.mean(hits)),
        }
        for t in self.thresholds:
            metrics[f"acc@{t:g}"] = 100.0 * float(np.mean(arr >= t))
        metrics["cumulative_iou"] = 100.0 * inter_sum / union_sum if union_sum > 0 else 0.0
        details = {
            "region_kinds": sorted(kinds),
            "thresholds": list(self.thresholds),
            "hit": "the best predicted region overlaps (IoU > 0) a true region",
        }
        return self._result(metrics, {"samples": len(targets)}, details)
