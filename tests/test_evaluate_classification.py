"""Zero-shot classification accuracy: a known confusion matrix, top-k, ties, labels, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skylens.errors import InputError
from skylens.evaluate import ZeroShotEvaluator, zero_shot_scores

NAMES = ["beach", "forest", "harbor"]


def test_known_confusion_matrix():
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # beach -> beach
            [0.2, 0.7, 0.1],  # beach -> forest
            [0.1, 0.8, 0.1],  # forest -> forest
            [0.0, 0.9, 0.1],  # forest -> forest
            [0.3, 0.1, 0.6],  # harbor -> harbor
            [0.5, 0.2, 0.3],  # harbor -> beach (true class ranked 2nd)
        ]
    )
    labels = [0, 0, 1, 1, 2, 2]
    res = ZeroShotEvaluator(NAMES, top_k=(1, 2, 5))(scores, labels)
    m = res["metrics"]
    assert m["top1"] == pytest.approx(400 / 6)
    assert m["top2"] == pytest.approx(100.0)
    assert m["top5"] is None and "3" in res["details"]["unavailable"]["top5"]
    assert res["details"]["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert res["details"]["per_class_accuracy"] == {"beach": 50.0, "forest": 100.0, "harbor": 50.0}
    assert m["mean_per_class"] == pytest.approx(200 / 3)
    assert res["primary_metric"] == "top1" and res["greater_is_better"] is True
    json.dumps(res)


def test_labels_by_name_and_absent_classes():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    res = ZeroShotEvaluator(NAMES)(scores, ["forest", "forest"])
    assert res["metrics"]["top1"] == 50.0
    assert res["details"]["per_class_accuracy"]["beach"] is None  # no sample: not 0
    assert res["metrics"]["mean_per_class"] == 50.0
    assert res["counts"] == {"samples": 2, "classes": 3, "classes_present": 1}


def test_ties_go_to_the_first_class_consistently():
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    res = ZeroShotEvaluator(NAMES, top_k=(1, 2))(scores, [0, 1])
    assert res["metrics"]["top1"] == 50.0  # argmax picks beach for both
    assert res["metrics"]["top2"] == 100.0
    assert res["details"]["confusion_matrix"][1] == [1, 0, 0]


def test_zero_shot_scores_are_cosines():
    img = np.array([[2.0, 0.0], [0.0, 3.0]])
    cls = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = zero_shot_scores(img, cls)
    assert s.shape == (2, 3)
    assert s[0, 0] == pytest.approx(1.0) and s[0, 2] == pytest.approx(2**-0.5)


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        (np.zeros((2, 2)), [0, 1], r"\(N, 3\)"),
        (np.zeros((2, 3)), [0], "2 score rows but 1 labels"),
        (np.zeros((1, 3)), ["desert"], "not one of the class names"),
        (np.zeros((1, 3)), [3], "outside 0..2"),
        (np.full((1, 3), np.nan), [0], "NaN"),
    ],
)
def test_bad_inputs(scores, labels, match):
    with pytest.raises(InputError, match=match):
        ZeroShotEvaluator(NAMES)(scores, labels)


def test_bad_class_names():
    with pytest.raises(InputError, match="repeat"):
        ZeroShotEvaluator(["a", "b", "a"])
    with pytest.raises(InputError, match="two class names"):
        ZeroShotEvaluator(["a"])
