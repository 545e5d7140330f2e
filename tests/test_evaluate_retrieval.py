"""Retrieval recall: hand-checked ranks, the AMFMN argsort protocol, chunking, ties, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skylens.errors import InputError
from skylens.evaluate import RetrievalEvaluator, retrieval_metrics
from skylens.evaluate.retrieval import hit_probability


def amfmn_reference(sims: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """The published protocol, written plainly: argsort every query (AMFMN acc_i2t2/acc_t2i2)."""
    n_img, n_txt = sims.shape
    r_i = []
    for i in range(n_img):
        order = np.argsort(sims[i])[::-1]
        r_i.append(min(np.where(order == j)[0][0] for j in np.where(owner == i)[0]))
    r_t = []
    for t in range(n_txt):
        order = np.argsort(sims[:, t])[::-1]
        r_t.append(np.where(order == owner[t])[0][0])
    r_i, r_t = np.array(r_i), np.array(r_t)
    out = {f"i2t_R@{k}": 100.0 * np.mean(r_i < k) for k in (1, 5, 10)}
    out |= {f"t2i_R@{k}": 100.0 * np.mean(r_t < k) for k in (1, 5, 10)}
    out["mR"] = float(np.mean(list(out.values())))
    out["i2t_medr"] = np.floor(np.median(r_i)) + 1
    out["t2i_medr"] = np.floor(np.median(r_t)) + 1
    out["i2t_meanr"] = r_i.mean() + 1
    out["t2i_meanr"] = r_t.mean() + 1
    return out


def test_hand_checked_ranks():
    # 3 images x 6 captions (2 each); rows = images, columns = captions
    sims = np.array(
        [
            [0.9, 0.1, 0.8, 0.0, 0.2, 0.3],  # img0: own caption 0 ranked 1st -> hit@1
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # img1: own 2,3 ranked 4th/3rd -> best rank 3
            [0.5, 0.4, 0.25, 0.2, 0.1, 0.0],  # img2: own 4,5 ranked 5th/6th -> best rank 5
        ],
        np.float32,
    )
    owner = np.array([0, 0, 1, 1, 2, 2])
    res = RetrievalEvaluator(ks=(1, 3, 5)).from_similarity(sims, owner)
    m = res["metrics"]
    assert m["i2t_R@1"] == pytest.approx(100 / 3)
    assert m["i2t_R@3"] == pytest.approx(200 / 3)
    assert m["i2t_R@5"] == pytest.approx(100.0)
    # text -> image ranks (0-based, from the columns): c0:0, c1:2, c2:1, c3:0, c4:2, c5:2
    assert m["t2i_R@1"] == pytest.approx(200 / 6)
    assert m["t2i_R@3"] == pytest.approx(100.0)
    assert m["t2i_medr"] == 2.0 and m["t2i_meanr"] == pytest.approx(1 + 7 / 6)
    assert m["mR"] == pytest.approx(np.mean([100 / 3, 200 / 3, 100, 100 / 3, 100, 100]))
    assert m["i2t_medr"] == 3.0  # ranks 1, 3, 5 (1-based)
    assert m["i2t_meanr"] == pytest.approx(3.0)
    assert res["task"] == "retrieval" and res["primary_metric"] == "mR"
    assert res["counts"] == {"images": 3, "texts": 6, "image_queries": 3, "text_queries": 6}
    json.dumps(res)  # plain, JSON-serialisable


def test_matches_argsort_protocol_on_random_embeddings():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(40, 16))
    owner = np.arange(40).repeat(5)
    txt = img[owner] + 1.2 * rng.normal(size=(200, 16))
    got = RetrievalEvaluator()(img, txt, owner)["metrics"]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    want = amfmn_reference(unit(img) @ unit(txt).T, owner)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert 0 < got["i2t_R@1"] < 100  # not a degenerate case


def test_block_size_does_not_change_the_answer():
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(23, 8)), rng.normal(size=(61, 8))
    owner = rng.integers(0, 23, size=61)
    one_row = RetrievalEvaluator(chunk_bytes=1)(img, txt, owner)
    whole = RetrievalEvaluator(chunk_bytes=2**30)(img, txt, owner)
    assert one_row["metrics"] == whole["metrics"]


def test_duplicate_captions_are_ties():
    # two images, both described by the same sentence: a 50/50 tie for each query
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[1.0, 1.0], [1.0, 1.0]])
    owner = np.array([0, 1])
    exp = RetrievalEvaluator(ks=(1, 2))(img, txt, owner)
    assert exp["metrics"]["i2t_R@1"] == pytest.approx(50.0)
    assert exp["metrics"]["t2i_R@1"] == pytest.approx(50.0)
    assert exp["metrics"]["i2t_R@2"] == exp["metrics"]["t2i_R@2"] == 100.0
    assert exp["details"]["tied_queries"] == {"i2t": 2, "t2i": 2}
    opt = RetrievalEvaluator(ks=(1,), ties="optimistic")(img, txt, owner)["metrics"]
    pes = RetrievalEvaluator(ks=(1,), ties="pessimistic")(img, txt, owner)["metrics"]
    assert opt["i2t_R@1"] == opt["t2i_R@1"] == 100.0
    assert pes["i2t_R@1"] == pes["t2i_R@1"] == 0.0


def test_hit_probability_counts_tie_orders():
    # 1 item above, tie group of 4 with 2 true items, top-2: the first tie slot must be true
    p = hit_probability(np.array([1]), np.array([4]), np.array([2]), k=2)
    assert p[0] == pytest.approx(2 / 4)
    # top-3: two tie slots; P(miss) = C(2,2)/C(4,2) = 1/6
    p = hit_probability(np.array([1]), np.array([4]), np.array([2]), k=3)
    assert p[0] == pytest.approx(5 / 6)
    assert hit_probability(np.array([3]), np.array([1]), np.array([1]), k=3)[0] == 0.0


def test_images_without_captions_are_distractors_only():
    img = np.eye(3)
    txt = np.eye(3)[:2]
    res = RetrievalEvaluator(ks=(1,))(img, txt, np.array([0, 1]))
    assert res["counts"]["image_queries"] == 2
    assert res["details"]["images_without_captions"] == 1
    assert res["metrics"]["i2t_R@1"] == res["metrics"]["t2i_R@1"] == 100.0


def test_flat_helper_and_defaults():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(12, 4))
    m = retrieval_metrics(img, img.repeat(5, 0), np.arange(12).repeat(5))
    assert set(m) >= {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mR"}
    assert m["i2t_R@1"] == m["t2i_R@1"] == 100.0


@pytest.mark.parametrize(
    "img, txt, owner, match",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), [0, 1], "3-d but text embeddings 4-d"),
        (np.ones((2, 3)), np.ones((2, 3)), [0], "one image index per caption"),
        (np.ones((2, 3)), np.ones((2, 3)), [0, 2], "outside the 2 images"),
        (np.ones((2, 3)), np.ones((2, 3)), [0.0, 1.0], "integer image indices"),
        (np.full((2, 3), np.nan), np.ones((2, 3)), [0, 1], "NaN"),
        (np.ones(3), np.ones((2, 3)), [0, 1], "2-d array"),
    ],
)
def test_bad_inputs_say_what_is_wrong(img, txt, owner, match):
    with pytest.raises(InputError, match=match):
        RetrievalEvaluator()(img, txt, np.asarray(owner))


def test_float64_scores_keep_their_precision():
    # differences far below float32 resolution still rank when given as float64 scores
    sims = np.array([[0.5 + 1e-12, 0.5], [0.5, 0.5 + 1e-12]], np.float64)
    res = RetrievalEvaluator(ks=(1,), tie_tolerance=0.0).from_similarity(sims, np.array([0, 1]))
    assert res["metrics"]["i2t_R@1"] == res["metrics"]["t2i_R@1"] == 100.0
    as32 = RetrievalEvaluator(ks=(1,), tie_tolerance=0.0).from_similarity(
        sims.astype(np.float32), np.array([0, 1])
    )
    assert as32["metrics"]["i2t_R@1"] == 50.0  # float32 cannot tell them apart: a tie
