"""VQA accuracy by question type and localization IoU/hit rate, on hand-checkable cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skylens.errors import InputError
from skylens.evaluate import LocalizationEvaluator, VQAEvaluator, iou, normalize_answer
from skylens.evaluate.vqa import question_type


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("Yeah!", "yes"),
        ("NOPE", "no"),
        ("Two", "2"),
        ("two.", "2"),
        ("none", "0"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("The top-left corner", "top left corner"),
        ("an airport", "airport"),
        ("  Dense   residential ", "dense residential"),
    ],
)
def test_answer_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_accuracy_per_question_type():
    preds = ["yes", "Two", "no", "3", "urban", "forest"]
    truth = ["yes", "2", "yes", "4", "Urban", ["woods", "forest"]]
    types = ["presence", "count", "presence", "count", "rural_urban", "scene"]
    res = VQAEvaluator()(preds, truth, question_types=types)
    m = res["metrics"]
    assert m["overall_accuracy"] == pytest.approx(400 / 6)
    assert m["accuracy/presence"] == 50.0 and m["accuracy/count"] == 50.0
    assert m["accuracy/rural_urban"] == 100.0 and m["accuracy/scene"] == 100.0
    assert m["average_accuracy"] == pytest.approx(75.0)
    assert res["details"]["per_type_counts"]["count"] == {"questions": 2, "correct": 1}
    assert res["primary_metric"] == "overall_accuracy"
    json.dumps(res)


def test_types_inferred_from_questions():
    qs = [
        "Is there a water area?",
        "How many trees in the picture?",
        "Are there more roads than buildings?",
        "Is it a rural or an urban area?",
        "What is the area covered by buildings?",
        "What is the theme of this picture?",
        "What is the location of the trees in this picture?",
        "Does this picture contain an airplane?",
    ]
    assert [question_type(q) for q in qs] == [
        "presence",
        "count",
        "comparison",
        "rural_urban",
        "area",
        "scene",
        "location",
        "presence",
    ]
    res = VQAEvaluator()(["yes"] * 8, ["yes"] * 8, questions=qs)
    assert res["counts"]["types"] == 7 and res["metrics"]["average_accuracy"] == 100.0
    untyped = VQAEvaluator()(["a"], ["b"])
    assert set(untyped["metrics"]) == {"overall_accuracy", "average_accuracy", "accuracy/all"}


def test_vqa_bad_inputs():
    with pytest.raises(InputError, match="2 predictions but 1"):
        VQAEvaluator()(["a", "b"], ["a"])
    with pytest.raises(InputError, match="question types"):
        VQAEvaluator()(["a"], ["a"], question_types=["x", "y"])


def test_box_iou_by_hand():
    assert iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    with pytest.raises(InputError, match="x1 < x0"):
        iou((2, 0, 1, 1), (0, 0, 1, 1))


def test_tile_set_and_mask_iou():
    assert iou({"a", "b", "c"}, {"b", "c", "d"}) == pytest.approx(2 / 4)
    m1 = np.zeros((4, 4), bool)
    m1[:2] = True
    m2 = np.zeros((4, 4), bool)
    m2[1:3] = True
    assert iou(m1, m2) == pytest.approx(4 / 12)
    with pytest.raises(InputError, match="cannot compare"):
        iou({"a"}, (0, 0, 1, 1))


def test_localization_metrics():
    preds = [
        [(0, 0, 2, 2), (10, 10, 12, 12)],  # best box IoU 1/3 with the true box -> hit, not acc
        (0, 0, 1, 1),  # exact -> hit, acc
        (5, 5, 6, 6),  # miss
        [],  # nothing predicted
    ]
    targets = [(1, 0, 3, 2), (0, 0, 1, 1), [(0, 0, 1, 1), (7, 7, 8, 8)], (0, 0, 1, 1)]
    res = LocalizationEvaluator(thresholds=(0.25, 0.5))(preds, targets)
    m = res["metrics"]
    assert m["mean_iou"] == pytest.approx(100 * (1 / 3 + 1) / 4)
    assert m["hit_rate"] == 50.0
    assert m["acc@0.25"] == 50.0 and m["acc@0.5"] == 25.0
    # cumulative: (2 + 1 + 0 + 0) / (6 + 1 + 2 + 1)
    assert m["cumulative_iou"] == pytest.approx(100 * 3 / 10)
    assert res["details"]["region_kinds"] == ["box"]
    json.dumps(res)


def test_localization_with_tile_sets():
    res = LocalizationEvaluator()([{"t1", "t2"}, {"t9"}], [{"t2", "t3"}, {"t4"}])
    assert res["metrics"]["hit_rate"] == 50.0
    assert res["metrics"]["mean_iou"] == pytest.approx(100 * (1 / 3) / 2)


def test_localization_bad_inputs():
    with pytest.raises(InputError, match="1 predictions but 2"):
        LocalizationEvaluator()([(0, 0, 1, 1)], [(0, 0, 1, 1), (0, 0, 1, 1)])
    with pytest.raises(InputError, match="thresholds"):
        LocalizationEvaluator(thresholds=(0,))
    with pytest.raises(InputError, match="a region must be"):
        LocalizationEvaluator()(["here"], [(0, 0, 1, 1)])
