"""VQA: question kinds, the zero-shot answerer, and the default model's trained heads."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import skylens
from skylens.errors import InputError
from skylens.models.answerer import (
    CANNOT,
    DEFAULT_VQA_WEIGHTS,
    ZeroShotAnswerer,
    object_key,
    presence_object,
    question_kind,
    question_object,
)


def _img(rgb):
    a = np.zeros((16, 16, 3), np.uint8)
    a[:] = rgb
    return a


RED, GREEN = _img((230, 10, 10)), _img((10, 230, 10))


@pytest.mark.parametrize(
    "q,kind",
    [
        ("What is the theme of this picture?", "scene"),
        ("Does this picture contain an airplane?", "presence"),
        ("Is there a river in this image?", "presence"),
        ("How many boats in the picture?", "count"),
        ("What is the number of buildings?", "count"),
        ("What is the location of the trees in this picture?", "location"),
        ("Where are the boats?", "location"),
        ("Are there more buildings than roads?", "comparison"),
        ("Is the number of buildings equal to the number of water areas?", "comparison"),
        ("Are there fewer cars than trees in the image?", "comparison"),
        ("Is there less water than residential buildings?", "comparison"),
        ("Is it a residential area?", "yes_no"),
        ("Is a road present in the image?", "presence"),
        ("Does the road cross the river?", "yes_no"),
        ("What kind of area is this?", "scene"),
        ("Why is the sky blue?", "other"),
        ("Describe the image.", "other"),
    ],
)
def test_question_kinds(q, kind):
    assert question_kind(q) == kind


def test_presence_object():
    assert presence_object("Does this picture contain an airplane?") == "airplane"
    assert presence_object("Are there any storage tanks in the image?") == "storage tanks"


@pytest.mark.parametrize(
    "q,obj,key",
    [
        ("How many mobile homes in the picture?", "mobile homes", "home"),
        ("How many cars are there?", "cars", "car"),
        ("What is the location of the red cars in this picture?", "red cars", "car"),
        ("Where is the cross point?", "cross point", "point"),
        ("Is there a river in this image?", "river", "river"),
        ("Is a water area present?", "water area", "area"),
        ("Does this picture contain trees?", "trees", "tree"),
        ("What is the theme of this picture?", None, ""),
    ],
)
def test_question_object(q, obj, key):
    assert question_object(q) == obj
    assert object_key(obj or "") == key


def test_scene_and_presence_answers():
    ans = ZeroShotAnswerer(
        skylens.load("fake"),
        scenes=["red", "green", "blue"],
        objects=["red", "green", "blue"],
        presence_threshold=0.5,
    )
    assert ans.answer(RED, "What is the theme of this picture?").text == "red"
    assert ans.answer(GREEN, "what is the theme of this picture?").text == "green"
    assert ans.answer(RED, "Does this picture contain red?").text == "yes"
    assert ans.answer(GREEN, "Does this picture contain red?").text == "no"


def test_unsupported_questions_say_so():
    ans = ZeroShotAnswerer(skylens.load("fake"))
    a = ans.answer(RED, "How many cars in the picture?")
    assert not a.supported and a.text == "cannot answer with this model" and "counting" in a.reason
    a = ans.answer(RED, "Are there more buildings than roads?")
    assert (a.kind, a.supported, a.text) == (
        "comparison",
        False,
        CANNOT,
    ) and "comparison" in a.reason
    a = ans.answer(RED, "Is it a residential area?")
    assert (a.kind, a.supported) == ("yes_no", False) and "yes/no" in a.reason
    with pytest.raises(InputError, match="empty"):
        ans.answer(RED, "   ")
    with pytest.raises(InputError, match="nothing was truncated"):
        ans.answer(RED, "is there " + "x" * 600)


def test_fit_learns_vocabulary_and_per_object_thresholds():
    model = skylens.load("fake")
    ans = ZeroShotAnswerer(model)
    samples, emb = [], {}
    for i in range(40):
        rgb = RED if i % 2 else GREEN
        emb[f"img{i}"] = model.encode_images([rgb])[0]
        samples.append(
            {
                "image": f"img{i}",
                "question": "What is the theme of this picture?",
                "answer": "red" if i % 2 else "green",
            }
        )
        samples.append(
            {
                "image": f"img{i}",
                "question": "Does this picture contain red?",
                "answer": "yes" if i % 2 else "no",
            }
        )
    ans.fit(samples, emb)
    assert list(ans.scenes) == ["green", "red"]
    assert "red" in ans.object_thresholds
    assert ans.answer(RED, "Does this picture contain red?").text == "yes"
    assert ans.answer(GREEN, "Does this picture contain red?").text == "no"


def _committed_card() -> dict:
    return json.loads(DEFAULT_VQA_WEIGHTS.with_suffix(".json").read_text())


def test_committed_weights_card_is_complete():
    card = _committed_card()
    assert card["data"]["split"].startswith("UCM-Captions dataset.json")
    assert set(card["heads"]) | set(card["zero_shot_kinds"]) >= {
        "scene",
        "presence",
        "count",
        "location",
    }
    for kind in ("comparison", "yes_no", "other"):
        assert kind in card["missing_heads"]
    for head in card["heads"].values():
        assert head["scores"]["test_questions"] > 0 and 0 <= head["scores"]["test_accuracy"] <= 100
        assert head["shapes"]["w2" if "w2" in head["shapes"] else "w1"][0] == len(head["answers"])
    assert DEFAULT_VQA_WEIGHTS.with_suffix(".md").is_file()


@pytest.mark.slow
def test_ask_cli_json_answers_count_with_committed_weights(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from skylens.cli import app

    rng = np.random.default_rng(0)
    path = tmp_path / "chip.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    res = CliRunner().invoke(
        app, ["ask", str(path), "How many cars in the picture?", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    ans = json.loads(res.stdout)
    assert ans["kind"] == "count" and ans["supported"] is True
    assert ans["text"] in _committed_card()["heads"]["count"]["answers"]
    assert 0.0 < ans["confidence"] <= 1.0 and "trained count head" in ans["reason"]
    res = CliRunner().invoke(
        app, ["ask", str(path), "How many airplanes in the picture?", "--format", "json"]
    )
    ans = json.loads(res.stdout)
    assert ans["supported"] is False and ans["text"] == CANNOT and "never occurred" in ans["reason"]


@pytest.mark.data
@pytest.mark.slow
def test_default_model_on_real_held_out_questions(shared_data):
    """A few RSIVQA-UCM questions on UCM-Captions test images, through ``model.answer``."""
    from skylens.datasets import get_dataset, load_image
    from skylens.evaluate.vqa import normalize_answer

    root = Path(os.environ.get("SKYLENS_DATA", shared_data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed lines are counted by the loader
        ds = get_dataset(
            "rsivqa",
            root / "rsivqa_ucm",
            split="test",
            files=["ucm_res.txt"],
            image_dir=root / "ucm_captions" / "images",
            image_splits=root / "ucm_captions" / "dataset.json",
        )
    model = skylens.load("default")
    samples = [s for s in ds][:40]  # 8 images x (scene, 2 presence, count, location)
    right: dict[str, list[bool]] = {}
    for s in samples:
        a = model.answer(load_image(s), s["question"])
        assert a.supported, a
        right.setdefault(a.kind, []).append(
            normalize_answer(a.text) == normalize_answer(s["answer"])
        )
    assert np.mean(right["scene"]) >= 0.75
    assert np.mean(right["presence"]) >= 0.8
    assert {"count", "location"} <= set(right)
