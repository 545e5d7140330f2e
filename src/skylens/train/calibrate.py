"""Honest scores for ``skylens-lite``: calibration fitted on held-out validation data.

* Class probabilities: softmax of cosine similarities divided by one temperature, the value
  that minimises the negative log-likelihood on validation images (temperature scaling, Guo et
  al., "On Calibration of Modern Neural Networks", ICML 2017). Reported with the expected
  calibration error (ECE, 15 equal-width confidence bins) before and after.
* "Unsure": the smallest lead of the best class over the second at which the predictions that
  clear it are right at least ``target`` of the time on validation.
* Text-match probability: a logistic (Platt 1999) on the cosine of an image-text pair and its
  z-score against the query's similarities to a reference bank of training images
  (``SkylensLite.calibrate_scores``), fitted on validation image / class-prompt pairs.
"""

from __future__ import annotations

import numpy as np

TEMPERATURES = np.geomspace(0.003, 0.3, 80)
V1_TEMPERATURE = 0.01  # the fixed temperature of skylens-lite v1 (the "before")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def nll(sims: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(sims / temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(groups: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Temperature minimising the mean NLL over ``(similarities (N, C), labels (N,))`` groups
    (each group its own class list)."""
    n = sum(len(y) for _, y in groups)
    cost = [sum(nll(s, y, t) * len(y) for s, y in groups) / n for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(cost))])


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error in percent: sum over confidence bins of
    |accuracy - mean confidence| weighted by the bin's share of predictions."""
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return round(100 * float(total), 2)


def calibration_report(
    sims: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, float]:
    """ECE and mean top-1 confidence at v1's fixed temperature and at ``temperature``."""
    before, after = softmax(sims / V1_TEMPERATURE), softmax(sims / temperature)
    return {
        "ece_before_pct": ece(before, labels),
        "ece_after_pct": ece(after, labels),
        "mean_confidence_before": round(float(before.max(1).mean()), 3),
        "mean_confidence_after": round(float(after.max(1).mean()), 3),
        "top1_pct": round(100 * float((sims.argmax(1) == labels).mean()), 2),
        "images": int(len(labels)),
    }


def lead_and_right(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: top-1 minus top-2 probability, and whether top-1 is right."""
    top2 = np.sort(probs, 1)[:, -2:]
    return top2[:, 1] - top2[:, 0], probs.argmax(1) == labels


def choose_unsure_margin(lead: np.ndarray, right: np.ndarray, target: float = 0.8) -> float:
    """Smallest probability lead (top-1 minus top-2) at which the predictions that clear it
    are right at least ``target`` of the time; 0 when all predictions already are."""
    for m in np.linspace(0.0, 0.9, 91):
        keep = lead >= m
        if keep.sum() >= 10 and right[keep].mean() >= target:
            return round(float(m), 2)
    return 0.9


def reference_bank(emb: np.ndarray, concepts: list[str], size: int, seed: int) -> np.ndarray:
    """``size`` training image embeddings drawn evenly over concepts (the match reference)."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, c in enumerate(concepts):
        by.setdefault(c, []).append(i)
    per = max(1, size // len(by))
    picks = [i for c in sorted(by) for i in rng.permutation(by[c])[:per]]
    return emb[np.array(picks)].astype(np.float32)


def match_z(text_emb: np.ndarray, sims: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """z-scores of (Q, N) similarities against each query's similarities to the bank."""
    ref = text_emb @ bank.T
    return (sims - ref.mean(1, keepdims=True)) / (ref.std(1, keepdims=True) + 1e-6)


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[np.ndarray, float]:
    """(weights, bias) of p = sigmoid(x @ weights + bias) by Newton's method, positives and
    negatives weighted equally. ``x`` is (N,) or (N, F)."""
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    xb = np.concatenate([x, np.ones((len(x), 1))], 1)
    w = np.where(y, 0.5 / max(1, y.sum()), 0.5 / max(1, (~y).sum()))
    theta = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(xb @ theta)))
        g = xb.T @ (w * (p - y))
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb
        theta -= np.linalg.solve(hess + 1e-6 * np.eye(len(theta)), g)
    return theta[:-1], float(theta[-1])
