"""Parts of the default model v2 that need no weights: scene vocabulary, question kinds,
calibration maths, balanced sampling, DOTA objects, honest confidences and "unsure"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from skylens.models.class_descriptions import canonical_class, class_prompts, describe, related
from skylens.models.questions import question_kind
from skylens.train import calibrate as cal


# -- scene vocabulary ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "concept"),
    [
        ("storagetanks", "storage tanks"),
        ("storage_tank", "storage tanks"),
        ("DenseResidential", "dense residential"),
        ("Industrial", "industrial area"),
        ("harbour", "harbor"),
        ("parking", "parking lot"),
        ("SeaLake", "sea lake"),
    ],
)
def test_folder_spellings_map_to_one_concept(name, concept):
    assert canonical_class(name) == concept


def test_unknown_class_has_no_description_and_prompts_fall_back_to_templates():
    assert canonical_class("zzzz qqqq") is None and describe("zzzz qqqq") == ()
    prompts = class_prompts("zzzz qqqq", ("a photo of {}.", "{} from above."))
    assert prompts == ["a photo of zzzz qqqq.", "zzzz qqqq from above."]


def test_known_class_prompts_add_its_descriptions():
    prompts = class_prompts("dense_residential", ("an aerial image of {}.",))
    assert prompts[0] == "an aerial image of dense residential."
    assert any("densely packed with houses" in p for p in prompts[1:])


def test_related_concepts_are_symmetric_and_not_universal():
    assert related("residential", "dense residential") and related(
        "dense residential", "residential"
    )
    assert not related("forest", "harbor")


# -- one question parser -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What is the theme of this picture?", "scene"),
        ("Is there a river in this image?", "presence"),
        ("How many ships are there?", "count"),
        ("Where is the airplane?", "location"),
        ("Are there more buildings than trees?", "comparison"),
        ("What is the area covered by water?", "area"),
        ("Is this a rural or an urban area?", "rural_urban"),
        ("What changed between the two dates?", "change"),
        ("Is it sunny?", "yes_no"),
        ("Describe the picture", "other"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


def test_evaluator_dataset_and_answerer_share_the_parser():
    from skylens.datasets.rsivqa import rsivqa_question_type
    from skylens.evaluate.vqa import question_type
    from skylens.models import answerer

    for q in ("How many cars are there?", "What is the area of the lake?", "Is there a road?"):
        assert question_type(q) == answerer.question_kind(q) == rsivqa_question_type(q, "x")
    assert rsivqa_question_type("Describe it", "yes") == "yes_no"


# -- honest confidences ---------------------------------------------------------------------------
def test_presence_confidence_is_a_probability_whatever_the_z_score():
    from skylens.models.answerer import Answer, presence_probability

    for z in (-50.0, -1.0, 0.9, 1.0, 3.0, 80.0):
        assert 0.0 <= presence_probability(z, 1.0) <= 1.0
    assert presence_probability(1.0, 1.0) == pytest.approx(0.5)
    assert presence_probability(3.0, 1.0) > presence_probability(2.0, 1.0)
    assert Answer("q", "scene", "x", confidence=1.015).confidence == 1.0
    assert Answer("q", "scene", "x", confidence=float("nan")).confidence == 0.0


def test_zero_shot_presence_answer_confidence_in_unit_interval(fake_encoder):
    from skylens.models.answerer import ZeroShotAnswerer

    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 250
    ans = ZeroShotAnswerer(fake_encoder, objects=("green", "blue", "red")).answer(
        red, "Is there red?"
    )
    assert ans.text in ("yes", "no") and 0.0 <= ans.confidence <= 1.0


# -- calibration maths ----------------------------------------------------------------------------
def _synthetic(temperature: float, n: int = 4000, c: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    sims = rng.normal(0, 0.05, (n, c))
    p = cal.softmax(sims / temperature)
    labels = np.array([rng.choice(c, p=row) for row in p])
    return sims, labels


def test_fit_temperature_recovers_the_generating_temperature():
    sims, labels = _synthetic(0.05)
    t = cal.fit_temperature([(sims, labels)])
    assert 0.035 < t < 0.07
    assert cal.ece(cal.softmax(sims / t), labels) < cal.ece(cal.softmax(sims / 0.01), labels)


def test_ece_is_zero_for_perfectly_calibrated_certain_predictions_and_large_when_overconfident():
    probs = np.eye(3)[[0, 1, 2, 0]]
    assert cal.ece(probs, np.array([0, 1, 2, 0])) == 0.0
    assert cal.ece(probs, np.array([1, 2, 0, 1])) == 100.0


def test_unsure_margin_is_the_smallest_lead_that_reaches_the_target():
    lead = np.linspace(0, 1, 200)
    right = lead > 0.5  # small leads are wrong, large ones right
    m = cal.choose_unsure_margin(lead, right, target=0.9)
    assert 0.4 < m <= 0.55
    assert cal.choose_unsure_margin(lead, np.ones(200, bool)) == 0.0


def test_logistic_fit_separates_matches_from_non_matches():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(3, 1, 200), rng.normal(0, 1, 2000)])
    y = np.concatenate([np.ones(200, bool), np.zeros(2000, bool)])
    (a,), b = cal.fit_logistic(z, y)
    p = 1 / (1 + np.exp(-(a * np.array([0.0, 3.0]) + b)))
    assert a > 0 and p[0] < 0.5 < p[1]


# -- sampling and sources -------------------------------------------------------------------------
def test_balanced_order_sees_rare_classes_as_often_as_common_ones():
    from skylens.train.sources import balanced_order

    concepts = ["forest"] * 300 + ["church"] * 15
    order = balanced_order(concepts, 6000, np.random.default_rng(0))
    share = np.mean([concepts[i] == "church" for i in order])
    assert 0.45 < share < 0.55


def test_dota_objects_become_class_named_crops(tmp_path):
    from skylens.train.sources import dota_items, object_crop_box

    root = tmp_path / "dota_samples"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    Image.new("RGB", (200, 120)).save(root / "images" / "P0001.png")
    (root / "labelTxt" / "P0001.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.3\n10 10 30 10 30 20 10 20 ship 0\n"
        "50 60 70 60 70 90 50 90 small-vehicle 1\nbroken line\n"
    )
    items = dota_items(tmp_path, tmp_path / "crops")
    assert [(it.label_name, it.concept) for it in items] == [
        ("ship", "ship"),
        ("small vehicle", "small vehicle"),
    ]
    sizes = [Image.open(it.image).size for it in items]
    assert sizes[0] == (64, 64) and sizes[1] == (75, 75)  # at least 64 px, else 2.5x the box
    box = object_crop_box((10.0, 10.0, 30.0, 20.0), 200, 120, context=2.0, min_side=64)
    assert box[2] - box[0] == box[3] - box[1] == 64 and box[0] >= 0 and box[1] >= 0


# -- "unsure" in classify ---------------------------------------------------------------------------
def test_classify_marks_unsure_when_the_best_label_is_not_clearly_ahead(tmp_path, fake_encoder):
    from skylens.tasks.classify import classify, is_unsure

    assert is_unsure(np.array([0.45, 0.40, 0.15]), 0.1)
    assert not is_unsure(np.array([0.80, 0.15, 0.05]), 0.1)
    assert not is_unsure(np.array([0.45, 0.40, 0.15]), 0.0)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 250
    Image.fromarray(red).save(tmp_path / "red.png")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    fake_encoder.zero_shot_temperature = 0.05
    for margin, expect in ((0.0, False), (1.01, True)):  # the model's margin decides
        fake_encoder.unsure_margin = margin
        out = classify(fake_encoder, [tmp_path], ["red", "green"])
        assert [r.unsure for r in out] == [expect, expect]
        assert all(0.0 <= s <= 1.0 for r in out for s in r.scores)
    red_result = next(r for r in out if r.source.endswith("red.png"))
    assert red_result.labels[0] == "red" and red_result.to_dict()["unsure"] is True


def test_train_all_and_training_items_refuse_a_folder_without_the_sources(tmp_path):
    from skylens.errors import InputError
    from skylens.train.all import train_all
    from skylens.train.sources import training_items

    with pytest.raises(InputError, match="ucm_captions"):
        train_all(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="none of the training sources"):
        training_items(tmp_path, ("ucm", "nwpu"), tmp_path / "cache")


def test_training_items_read_every_present_source_through_the_registry(tmp_path):
    import importlib.util
    from pathlib import Path

    from skylens.train.sources import summary, training_items

    here = Path(__file__).parent / "data"
    for name, folder in (("ucm_captions", "ucm_captions"), ("eurosat", "eurosat_rgb_subset")):
        spec = importlib.util.spec_from_file_location(f"mk_{name}", here / name / "make.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.make(tmp_path / folder)
    items = training_items(tmp_path, ("ucm", "nwpu", "eurosat"), tmp_path / "cache")
    counts = summary(items)
    assert set(counts) == {"ucm", "eurosat"}  # NWPU absent: skipped, not an error
    assert all(it.concept and it.label_name for it in items)
    assert any(it.captions for it in items if it.source == "ucm")
    assert {it.role for it in items if it.source == "eurosat"} == {"train", "val"}
