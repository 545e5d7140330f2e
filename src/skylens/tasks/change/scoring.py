"""Change evidence on real pairs: radiometric matching, deep change vectors, a per-pair threshold.

Real before/after pairs differ everywhere a little (season, sun, sensor, registration), so a
per-chip embedding distance sees "change" everywhere. This module follows unsupervised deep
change vector analysis (DCVA; Saha, Bovolo & Bruzzone 2019, "Unsupervised Deep Change Vector
Analysis for Multiple-Change Detection in VHR Images", IEEE TGRS 57(6)):

1. **Radiometric normalisation**: AFTER is linearly matched to BEFORE band by band (median
   and inter-quartile range, over the pixels valid at both dates), removing global
   illumination, season tone and sensor gain before any comparison; robust statistics keep
   the changes themselves from bending the match.
2. **Sub-chip deep evidence**: both dates run through the image tower (a frozen ImageNet CNN)
   in windows of ``grid * cell`` pixels resized to the tower's input, and the tower's spatial
   feature map gives one feature vector per ``cell`` x ``cell`` pixel cell. The change
   magnitude of a cell is the cosine distance of its BEFORE and AFTER feature vectors. Models
   without a spatial grid fall back to one embedding per cell (``encode_images``).
3. **Misregistration tolerance**: the AFTER windows are also read shifted by ``shift`` pixels
   in the four axis directions and each cell keeps its smallest distance, so a pair that is
   off by a few pixels does not light up along every edge.
4. **Coarse to fine**: the model's joint (semantic, land-cover-aware) embedding of
   overlapping ``tile`` windows says what changed; the feature grid keeps, inside that, the
   pixels whose own cell changed (``skylens.tasks.change.pipeline``).
5. **Threshold**: the two-class EM / Bayes rule of Bruzzone & Prieto (2000) on the pixel
   scores (``mixture_threshold``), never below the encoder's own noise: the 95th percentile of
   distances between BEFORE windows and their mirror images (same content, so what the
   features move when nothing on the ground moved).

Settings were chosen on principle and on a planted-change selection set
(``bench/bench_change_real.py``, "planted"), never on the LEVIR-CD pairs that measure them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from skylens.models.base import ImageTextEncoder, l2_normalize

BATCH = 32  # windows per forward pass of the image tower
NOISE_WINDOWS = 16  # BEFORE windows compared with their mirror image for the noise floor
NOISE_QUANTILE = 95.0  # percentile of the mirror distances taken as the encoder's noise
FLOAT_FLOOR = 1e-4  # float32 rounding of unit vectors: below this two features are equal
UNIFORM_FACTOR = 3.0  # distances up to this many times the noise level count as "alike"
MIXTURE_SAMPLE = 200_000  # pixel scores the EM fit sees at most (an even subsample)


@dataclass
class ScoreGrid:
    """Cell-level change evidence of a pair.

    Attributes:
        cell: cell side in pixels.
        distances: (ceil(H/cell), ceil(W/cell)) float32 cosine distances (min over shifts).
        noise: the encoder's noise level (p95 of mirror-pair cell distances).
        source: 'feature grid' (the tower's spatial map) or 'cell embeddings' (fallback).
    """

    cell: int
    distances: np.ndarray
    noise: float
    source: str


def match_radiometry(after: np.ndarray, before: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """AFTER's pixels linearly matched to BEFORE's, band by band, with robust statistics.

    Per band, AFTER is scaled and shifted so that its median and inter-quartile range equal
    BEFORE's over the pixels valid at both dates. Quartiles are set by the unchanged majority
    of a scene, so a change covering up to a quarter of it does not bend the match (a full
    histogram match would map a new bright roof onto BEFORE's brightest grass).

    Args:
        after, before: HxWx3 uint8 RGB on one grid.
        valid: HxW bool, pixels with data at both dates (only they set and receive the match).

    Returns:
        HxWx3 uint8: AFTER with BEFORE's per-band median and spread.
    """
    out = after.copy()
    if valid.sum() < 2:
        return out
    a = after[valid].astype(np.float32)
    b = before[valid].astype(np.float32)
    qa = np.percentile(a, [25, 50, 75], axis=0)
    qb = np.percentile(b, [25, 50, 75], axis=0)
    spread_a, spread_b = qa[2] - qa[0], qb[2] - qb[0]
    gain = np.where(spread_a > 1.0, spread_b / np.maximum(spread_a, 1e-6), 1.0)
    matched = (a - qa[1]) * gain + qb[1]
    out[valid] = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    return out


def spatial_tower(model: ImageTextEncoder):
    """The model's image tower when it exposes a spatial feature map (``run(with_fmap=True)``)
    and its preprocessing (``model.preprocess``), else None."""
    tower = getattr(model, "image_tower", None)
    if callable(getattr(tower, "run", None)) and callable(getattr(model, "preprocess", None)):
        return tower
    return None


def feature_distances(
    model: ImageTextEncoder,
    before: np.ndarray,
    after: np.ndarray,
    cell: int,
    shift: int,
    progress=None,
) -> ScoreGrid:
    """Cell-level deep change magnitudes of two co-registered RGB images.

    Args:
        model: the encoder (its image tower's feature map when it has one).
        before, after: HxWx3 uint8 on one grid (AFTER already radiometrically matched).
        cell: cell side in pixels (the unit of evidence).
        shift: misregistration tolerated, in pixels (0: none).
        progress: optional callable(done, total) for a progress bar.

    Returns:
        The ``ScoreGrid``.
    """
    tower = spatial_tower(model)
    if tower is not None:
        g = _grid_side(model, tower)
        return _tower_distances(model, tower, before, after, cell, g, shift, progress)
    return _embedding_distances(model, before, after, cell, shift, progress)


def _shifts(shift: int) -> list[tuple[int, int]]:
    if shift <= 0:
        return [(0, 0)]
    return [(0, 0), (shift, 0), (-shift, 0), (0, shift), (0, -shift)]


def _grid_side(model, tower) -> int:
    size = int(getattr(model, "image_size", 224) or 224)
    probe = tower.run(model.preprocess([np.zeros((size, size, 3), np.uint8)]), with_fmap=True)
    return int(probe.fmap.shape[-1])


def _padded(img: np.ndarray, margin: int, height: int, width: int) -> np.ndarray:
    """``img`` reflect-padded by ``margin`` on every side, and to ``height`` x ``width`` inside."""
    h, w = img.shape[:2]
    return np.pad(
        img, ((margin, margin + height - h), (margin, margin + width - w), (0, 0)), mode="reflect"
    )


def _windows(h: int, w: int, side: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(0, h, side) for x in range(0, w, side)]


def _batched(items: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _tower_distances(model, tower, before, after, cell, g, shift, progress) -> ScoreGrid:
    h, w = before.shape[:2]
    side = g * cell
    hp, wp = -(-h // side) * side, -(-w // side) * side
    m = max(shift, 0)
    pb, pa = _padded(before, m, hp, wp), _padded(after, m, hp, wp)
    shifts = _shifts(shift)
    out = np.zeros((hp // cell, wp // cell), np.float32)
    wins = _windows(hp, wp, side)
    for k, batch in enumerate(_batched(wins, max(1, BATCH // len(shifts)))):
        crops = [pb[m + y : m + y + side, m + x : m + x + side] for y, x in batch]
        for dy, dx in shifts:
            crops += [
                pa[m + y + dy : m + y + dy + side, m + x + dx : m + x + dx + side] for y, x in batch
            ]
        fmap = tower.run(model.preprocess(crops), with_fmap=True).fmap
        feats = fmap / (np.linalg.norm(fmap, axis=1, keepdims=True) + 1e-12)
        n = len(batch)
        fb = feats[:n]
        dist = np.stack(
            [
                1.0 - np.sum(fb * feats[n * (s + 1) : n * (s + 2)], axis=1)
                for s in range(len(shifts))
            ]
        ).min(0)
        for (y, x), d in zip(batch, dist, strict=True):
            out[y // cell : y // cell + g, x // cell : x // cell + g] = d
        if progress is not None:
            progress(min((k + 1) * len(batch), len(wins)), len(wins))
    pick = np.unique(np.linspace(0, len(wins) - 1, min(NOISE_WINDOWS, len(wins))).astype(int))
    crops = [
        pb[m + wins[i][0] : m + wins[i][0] + side, m + wins[i][1] : m + wins[i][1] + side]
        for i in pick
    ]
    fmaps = tower.run(model.preprocess(crops + [c[:, ::-1] for c in crops]), with_fmap=True).fmap
    feats = fmaps / (np.linalg.norm(fmaps, axis=1, keepdims=True) + 1e-12)
    orig, mirr = feats[: len(crops)], feats[len(crops) :, :, :, ::-1]
    noise = float(np.percentile(1.0 - np.sum(orig * mirr, axis=1), NOISE_QUANTILE))
    grid = out[: -(-h // cell), : -(-w // cell)]
    return ScoreGrid(cell=cell, distances=np.maximum(grid, 0.0), noise=noise, source="feature grid")


def _embedding_distances(model, before, after, cell, shift, progress) -> ScoreGrid:
    h, w = before.shape[:2]
    hp, wp = -(-h // cell) * cell, -(-w // cell) * cell
    m = max(shift, 0)
    pb, pa = _padded(before, m, hp, wp), _padded(after, m, hp, wp)
    wins = _windows(hp, wp, cell)
    shifts = _shifts(shift)
    out = np.zeros((hp // cell, wp // cell), np.float32)
    for k, batch in enumerate(_batched(wins, max(1, BATCH))):
        eb = model.encode_images([pb[m + y : m + y + cell, m + x : m + x + cell] for y, x in batch])
        dist = None
        for dy, dx in shifts:
            crops = [
                pa[m + y + dy : m + y + dy + cell, m + x + dx : m + x + dx + cell] for y, x in batch
            ]
            d = 1.0 - np.sum(eb * model.encode_images(crops), axis=1)
            dist = d if dist is None else np.minimum(dist, d)
        for (y, x), d in zip(batch, dist, strict=True):
            out[y // cell, x // cell] = d
        if progress is not None:
            progress(min((k + 1) * len(batch), len(wins)), len(wins))
    pick = np.unique(np.linspace(0, len(wins) - 1, min(4 * NOISE_WINDOWS, len(wins))).astype(int))
    crops = [
        pb[m + wins[i][0] : m + wins[i][0] + cell, m + wins[i][1] : m + wins[i][1] + cell]
        for i in pick
    ]
    sims = np.sum(
        l2_normalize(model.encode_images(crops))
        * l2_normalize(model.encode_images([c[:, ::-1] for c in crops])),
        axis=1,
    )
    noise = float(np.percentile(1.0 - sims, NOISE_QUANTILE))
    grid = out[: -(-h // cell), : -(-w // cell)]
    return ScoreGrid(
        cell=cell, distances=np.maximum(grid, 0.0), noise=noise, source="cell embeddings"
    )


def window_distances(
    model: ImageTextEncoder,
    before: np.ndarray,
    after: np.ndarray,
    window: int,
    stride: int,
    shift: int = 0,
    progress=None,
) -> tuple[np.ndarray, float]:
    """Pixel change scores from the model's joint embedding of overlapping windows.

    Each ``window`` px window (every ``stride`` px) of both dates is embedded whole
    (``encode_images``: the semantic, land-cover-aware embedding the model was trained for);
    a pixel's score is the mean cosine distance of the windows covering it.

    Args:
        model: any ``ImageTextEncoder``.
        before, after: HxWx3 uint8 on one grid (AFTER already radiometrically matched).
        window, stride: window side and step in pixels.
        shift: misregistration (px) the noise level allows for.
        progress: optional callable(done, total).

    Returns:
        ((H, W) float32 scores, the encoder's noise: p95 of the distances of windows to
        themselves mirrored or shifted by ``shift`` px).
    """
    from skylens.imagery.tiling import window_starts

    h, w = before.shape[:2]
    win_h, win_w = min(window, h), min(window, w)
    boxes = [
        (y, x) for y in window_starts(h, win_h, stride) for x in window_starts(w, win_w, stride)
    ]
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    for k, batch in enumerate(_batched(boxes, BATCH)):
        eb = l2_normalize(
            model.encode_images([before[y : y + win_h, x : x + win_w] for y, x in batch])
        )
        ea = l2_normalize(
            model.encode_images([after[y : y + win_h, x : x + win_w] for y, x in batch])
        )
        dist = 1.0 - np.sum(eb * ea, axis=1)
        for (y, x), d in zip(batch, dist, strict=True):
            acc[y : y + win_h, x : x + win_w] += d
            cnt[y : y + win_h, x : x + win_w] += 1
        if progress is not None:
            progress(min((k + 1) * BATCH, len(boxes)), len(boxes))
    noise = _window_noise(model, before, boxes, win_h, win_w, shift)
    return np.maximum(acc / np.maximum(cnt, 1), 0.0).astype(np.float32), noise


def _window_noise(model, before, boxes, win_h, win_w, shift) -> float:
    """p95 of the distances between BEFORE windows and themselves mirrored or shifted by
    ``shift`` px: what the embedding moves when nothing on the ground moved."""
    h, w = before.shape[:2]
    pick = np.unique(np.linspace(0, len(boxes) - 1, min(2 * NOISE_WINDOWS, len(boxes))).astype(int))
    crops, others = [], []
    for i in pick:
        y, x = boxes[i]
        crop = before[y : y + win_h, x : x + win_w]
        ys, xs = min(max(0, y + shift), h - win_h), min(max(0, x + shift), w - win_w)
        crops += [crop, crop]
        others += [crop[:, ::-1], before[ys : ys + win_h, xs : xs + win_w]]
    sims = np.sum(
        l2_normalize(model.encode_images(crops)) * l2_normalize(model.encode_images(others)), axis=1
    )
    return float(np.percentile(1.0 - sims, NOISE_QUANTILE))


def pixel_scores(grid: ScoreGrid, shape: tuple[int, int]) -> np.ndarray:
    """The cell distances bilinearly upsampled to pixels (cell centres keep their values).

    Args:
        grid: the cell evidence.
        shape: (height, width) of the scene in pixels.
    """
    from PIL import Image

    h, w = shape
    d = grid.distances.astype(np.float32)
    big = Image.fromarray(d, mode="F").resize(
        (d.shape[1] * grid.cell, d.shape[0] * grid.cell), Image.BILINEAR
    )
    return np.asarray(big, np.float32)[:h, :w]


def mixture_threshold(values: np.ndarray, noise: float) -> tuple[float, dict]:
    """The change threshold of a pair: Bayes decision between two Gaussian classes fitted by EM.

    Bruzzone & Prieto (2000), "Automatic analysis of the difference image for unsupervised
    change detection" (IEEE TGRS 38(3)): the change magnitudes are a mixture of an unchanged
    and a changed class; EM (``sklearn.mixture.GaussianMixture``) estimates both with their
    priors, and a pixel is changed where the changed class's posterior passes 0.5. Unlike
    Otsu's threshold, it copes with a changed class much smaller than the unchanged one. When
    the higher component is the majority, the mixture has modelled a skewed background rather
    than a changed minority, and Otsu's (1979) threshold is used instead. The threshold never
    goes below the encoder's noise.

    Args:
        values: change scores of the valid pixels (any shape).
        noise: the encoder's noise level in the same units.

    Returns:
        (threshold, its terms as a JSON-ready dict).
    """
    from sklearn.mixture import GaussianMixture

    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    floor = max(noise, FLOAT_FLOOR)
    cut = float("nan")
    means = priors = None
    rule = "none (no spread)"
    if v.size >= 2 and np.ptp(v) > FLOAT_FLOOR:
        sample = v[:: max(1, v.size // MIXTURE_SAMPLE)].reshape(-1, 1)
        gm = GaussianMixture(2, random_state=0).fit(sample)
        hi = int(np.argmax(gm.means_.ravel()))
        means = [round(float(x), 5) for x in gm.means_.ravel()]
        priors = [round(float(x), 4) for x in gm.weights_]
        if gm.weights_[hi] <= 0.5:
            lo_mean = float(gm.means_.min())
            grid = np.linspace(lo_mean, float(v.max()), 1024).reshape(-1, 1)
            above = np.flatnonzero(gm.predict_proba(grid)[:, hi] > 0.5)
            cut = float(grid[above[0], 0]) if above.size else float(v.max())
            rule = "EM"
        else:  # the fit modelled a skewed background, not a minority changed class
            from skimage.filters import threshold_otsu

            cut, rule = float(threshold_otsu(sample.ravel())), "Otsu (EM found no minority class)"
    thr = max(cut, floor) if np.isfinite(cut) else floor
    med = float(np.median(v)) if v.size else float("nan")
    return thr, {
        "method": "max(EM two-class Bayes threshold (Bruzzone & Prieto 2000) or Otsu, noise)",
        "rule": rule,
        "cut": _r(cut),
        "class_means": means,
        "class_priors": priors,
        "mirror_noise_p95": _r(noise),
        "median": _r(med),
        "value": _r(thr),
    }


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)
