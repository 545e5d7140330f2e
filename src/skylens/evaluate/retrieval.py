"""Cross-modal retrieval recall: R@1/5/10 image->text and text->image, and their mean mR.

The protocol of remote-sensing image-text retrieval (AMFMN: Yuan et al. 2022, "Exploring a
Fine-Grained Multiscale Method for Cross-Modal Remote Sensing Image Retrieval", IEEE TGRS;
reused by GaLR, RemoteCLIP: Liu et al. 2024, IEEE TGRS; GeoRSCLIP/RS5M: Zhang et al. 2024):

* every caption belongs to exactly one image (UCM-Captions, RSICD, RSITMD: five per image);
* **image -> text**: an image query scores a hit at K if *any* of its captions is among the K
  most similar captions (AMFMN ``acc_i2t2``: the rank of the best-ranked ground-truth caption);
* **text -> image**: a caption query scores a hit at K if its image is among the K most similar
  images (AMFMN ``acc_t2i2``);
* recall is the percentage of queries that hit; ``mR`` is the mean of the six recalls
  (R@1/5/10 both ways); median and mean rank are 1-based (``floor(median(rank)) + 1``).

Ties. Captions repeat across images in these data sets ("There is a piece of farmland ." belongs
to many images), so an image's true caption is often tied with identical captions of other
images. Reference code sorts with ``np.argsort`` and leaves the order of ties to the sort
algorithm. Here ties are explicit: ``ties="expected"`` (default) scores the expectation over a
uniformly random order of tied items (what an arbitrary sort gives on average), ``"optimistic"``
puts true items first, ``"pessimistic"`` last. Without ties all three equal the argsort protocol.
Scores within ``tie_tolerance`` of each other count as tied, since float32 dot products of equal
vectors may differ in their last bits.

Similarities are computed block by block in float32 (``chunk_bytes`` of scores at a time), so
10,000 images x 50,000 captions needs about 100 MB of working memory, not the 2-4 GB of the full
matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from skylens.errors import InputError
from skylens.evaluate.base import Evaluator

TieRule = Literal["expected", "optimistic", "pessimistic"]


class RetrievalEvaluator(Evaluator):
    """Image<->text retrieval recall at K (percent) and mR, as the RS retrieval papers report it.

    Args:
        ks: cut-offs K (the field reports 1, 5, 10; ``mR`` averages all recalls computed).
        normalize: L2-normalise embeddings first, i.e. rank by cosine similarity (CLIP-style).
        ties: how tied scores are ordered (see the module docstring).
        tie_tolerance: scores closer than this (in similarity units) count as tied.
        chunk_bytes: size of one block of float32 similarities (bytes).

    Call it with ``(image_embeddings (N, D), text_embeddings (M, D), text_to_image (M,))``, or use
    :meth:`from_similarity` with a precomputed (N, M) score matrix.
    """

    task = "retrieval"
    primary_metric = "mR"
    greater_is_better = True
    units = "percent (recall); ranks are 1-based positions"

    def __init__(
        self,
        ks: Sequence[int] = (1, 5, 10),
        *,
        normalize: bool = True,
        ties: TieRule = "expected",
        tie_tolerance: float = 1e-6,
        chunk_bytes: int = 64 * 2**20,
    ) -> None:
        if not ks or any(int(k) < 1 for k in ks):
            raise InputError(f"retrieval cut-offs must be positive integers, got {list(ks)}")
        if ties not in ("expected", "optimistic", "pessimistic"):
            raise InputError(f"ties must be expected, optimistic or pessimistic, not {ties!r}")
        self.ks = tuple(sorted({int(k) for k in ks}))
        self.normalize = normalize
        self.ties = ties
        self.tie_tolerance = float(tie_tolerance)
        self.chunk_bytes = int(chunk_bytes)

    def __call__(
        self,
        image_embeddings: np.ndarray,
        text_embeddings: np.ndarray,
        text_to_image: Sequence[int] | np.ndarray,
    ) -> dict[str, Any]:
        """Recall both ways from embeddings.

        Args:
            image_embeddings: (N, D) one row per image.
            text_embeddings: (M, D) one row per caption.
            text_to_image: (M,) index of each caption's image in ``image_embeddings``.
        """
        img = _as_matrix(image_embeddings, "image_embeddings")
        txt = _as_matrix(text_embeddings, "text_embeddings")
        if img.shape[1] != txt.shape[1]:
            raise InputError(
                f"image embeddings are {img.shape[1]}-d but text embeddings {txt.shape[1]}-d: "
                "encode both with the same model"
            )
        owner = _owners(text_to_image, len(txt), len(img))
        if self.normalize:
            img, txt = _unit(img), _unit(txt)
        # t2i targets in float64 (accurate); the tolerance absorbs float32 GEMM rounding.
        target = np.concatenate(
            [
                np.einsum(
                    "md,md->m",
                    txt[a : a + 2048].astype(np.float64),
                    img[owner[a : a + 2048]].astype(np.float64),
                )
                for a in range(0, len(txt), 2048)
            ]
        )

        def blocks():
            rows = max(1, self.chunk_bytes // (4 * len(txt)))
            for a in range(0, len(img), rows):
                yield a, img[a : a + rows] @ txt.T

        return self._rank(blocks(), owner, len(img), len(txt), target)

    def from_similarity(
        self, similarity: np.ndarray, text_to_image: Sequence[int] | np.ndarray
    ) -> dict[str, Any]:
        """Recall both ways from an (N images, M texts) score matrix (higher = more similar)."""
        sim = _as_matrix(similarity, "similarity", keep_float64=True)
        owner = _owners(text_to_image, sim.shape[1], sim.shape[0])
        target = sim[owner, np.arange(sim.shape[1])].astype(np.float64)
        rows = max(1, self.chunk_bytes // (4 * sim.shape[1]))
        blocks = ((a, sim[a : a + rows]) for a in range(0, sim.shape[0], rows))
        return self._rank(blocks, owner, sim.shape[0], sim.shape[1], target)

    def _rank(self, blocks, owner: np.ndarray, n_img: int, n_txt: int, target: np.ndarray):
        tol = self.tie_tolerance
        order = np.argsort(owner, kind="stable")  # captions grouped by image
        starts = np.searchsorted(owner[order], np.arange(n_img + 1))
        i2t_above = np.zeros(n_img, np.int64)
        i2t_tied = np.zeros(n_img, np.int64)
        i2t_true = np.zeros(n_img, np.int64)
        t2i_above = np.zeros(n_txt, np.int64)
        t2i_tied = np.zeros(n_txt, np.int64)
        bounds = {
            dt: ((target + tol).astype(dt), (target - tol).astype(dt))
            for dt in (np.dtype(np.float32), np.dtype(np.float64))
        }
        for a, block in blocks:
            # thresholds in the scores' own dtype (a float64 threshold would cast every score)
            dt = block.dtype
            target_hi, target_lo = bounds[dt]
            b = a + len(block)
            # image -> text: rank of the best of the image's own captions
            caps = order[starts[a] : starts[b]]
            rows = owner[caps] - a
            vals = block[rows, caps].astype(np.float64)
            best = np.full(len(block), -np.inf)
            np.maximum.at(best, rows, vals)
            hi, lo = (best + tol).astype(dt)[:, None], (best - tol).astype(dt)[:, None]
            np.add.at(i2t_true[a:b], rows, block[rows, caps] >= lo[rows, 0])
            above = np.count_nonzero(block > hi, axis=1)
            i2t_above[a:b] = above
            i2t_tied[a:b] = np.count_nonzero(block >= lo, axis=1) - above
            # text -> image: rank of each caption's image among all images (accumulated)
            above_t = np.count_nonzero(block > target_hi, axis=0)
            t2i_above += above_t
            t2i_tied += np.count_nonzero(block >= target_lo, axis=0) - above_t
            own = block[rows, caps]  # a caption's own image is no competitor
            own_above = own > target_hi[caps]
            np.subtract.at(t2i_above, caps, own_above)
            np.subtract.at(t2i_tied, caps, (own >= target_lo[caps]) & ~own_above)
        has_caption = np.diff(starts) > 0
        i2t = _recalls(
            i2t_above[has_caption],
            i2t_tied[has_caption],
            i2t_true[has_caption],
            self.ks,
            self.ties,
        )
        t2i = _recalls(t2i_above, t2i_tied + 1, np.ones(n_txt, np.int64), self.ks, self.ties)
        metrics: dict[str, float] = {}
        for k in self.ks:
            metrics[f"i2t_R@{k}"] = i2t[k]
        for k in self.ks:
            metrics[f"t2i_R@{k}"] = t2i[k]
        metrics["mR"] = float(
            np.mean([metrics[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in self.ks])
        )
        for name, res in (("i2t", i2t), ("t2i", t2i)):
            metrics[f"{name}_medr"] = res["medr"]
            metrics[f"{name}_meanr"] = res["meanr"]
        counts = {
            "images": n_img,
            "texts": n_txt,
            "image_queries": int(has_caption.sum()),
            "text_queries": n_txt,
        }
        details = {
            "ks": list(self.ks),
            "ties": self.ties,
            "tie_tolerance": tol,
            "normalize": self.normalize,
            "images_without_captions": int((~has_caption).sum()),
            "tied_queries": {
                "i2t": int((i2t_tied[has_caption] > i2t_true[has_caption]).sum()),
                "t2i": int((t2i_tied > 0).sum()),
            },
        }
        return self._result(metrics, counts, details)


def retrieval_metrics(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    text_to_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Flat ``{"i2t_R@1": ..., "t2i_R@10": ..., "mR": ...}`` (percent) with default settings."""
    return RetrievalEvaluator(ks)(image_embeddings, text_embeddings, text_to_image)["metrics"]


def hit_probability(
    above: np.ndarray, tied: np.ndarray, true_tied: np.ndarray, k: int, ties: TieRule = "expected"
) -> np.ndarray:
    """Probability that a true item is in the top ``k``.

    Args:
        above: number of items scored strictly higher than the best true item.
        tied: size of the tie group at the best true score (true items included).
        true_tied: number of true items in that tie group (>= 1).
        k: cut-off.
        ties: ``expected`` (uniformly random order inside the tie group), ``optimistic``,
            ``pessimistic``.
    """
    above, tied, true_tied = (np.asarray(x, np.int64) for x in (above, tied, true_tied))
    if ties == "optimistic":
        return (above < k).astype(np.float64)
    if ties == "pessimistic":
        return (above + tied - true_tied < k).astype(np.float64)
    slots = k - above  # positions of the top k left for the tie group
    miss = np.ones(len(above))  # P(no true item among the first `slots` of the tie group)
    for i in range(k):
        active = i < slots
        num = tied - true_tied - i
        den = np.maximum(tied - i, 1)
        miss = np.where(active, miss * np.clip(num, 0, None) / den, miss)
    return np.where(slots > 0, 1.0 - miss, 0.0)


def _recalls(above, tied, true_tied, ks, ties) -> dict:
    out: dict = {}
    n = max(len(above), 1)
    for k in ks:
        out[k] = 100.0 * float(hit_probability(above, tied, true_tied, k, ties).sum()) / n
    others = tied - true_tied
    if ties == "optimistic":
        rank = above.astype(np.float64)
    elif ties == "pessimistic":
        rank = (above + others).astype(np.float64)
    else:  # expected position of the first true item among `tied` shuffled items
        rank = above + others / (true_tied + 1.0)
    if len(rank):
        out["medr"] = float(np.floor(np.median(rank)) + 1)
        out["meanr"] = float(rank.mean() + 1)
    else:
        out["medr"] = out["meanr"] = None
    return out


def _as_matrix(x: np.ndarray, name: str, keep_float64: bool = False) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{name} must be a non-empty 2-d array, got shape {arr.shape}")
    wanted = np.float64 if keep_float64 and arr.dtype == np.float64 else np.float32
    arr = arr.astype(wanted, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds NaN or infinite values: check the model's outputs")
    return arr


def _owners(text_to_image, n_txt: int, n_img: int) -> np.ndarray:
    owner = np.asarray(text_to_image)
    if owner.shape != (n_txt,):
        raise InputError(
            f"text_to_image must give one image index per caption: {n_txt} captions, "
            f"got shape {owner.shape}"
        )
    if n_txt and not np.issubdtype(owner.dtype, np.integer):
        raise InputError("text_to_image must hold integer image indices")
    owner = owner.astype(np.int64)
    if n_txt and (owner.min() < 0 or owner.max() >= n_img):
        raise InputError(
            f"text_to_image points outside the {n_img} images (min {owner.min()}, max {owner.max()})"
        )
    return owner


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; no copy when they already are (CLIP-style embeddings)."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]  # no N x D temporary
    if np.all(np.abs(norm - 1.0) < 1e-4):
        return x
    return (x / np.maximum(norm, 1e-12)).astype(np.float32, copy=False)
