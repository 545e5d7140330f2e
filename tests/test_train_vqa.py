"""``skylens train vqa`` on a tiny generated RSIVQA-UCM copy, with the fake colour encoder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import skylens
from skylens.errors import ModelError
from skylens.models.answerer import (
    CANNOT,
    TrainedAnswerer,
    ZeroShotAnswerer,
    default_answerer,
    load_answerer,
)
from skylens.train.vqa import WEIGHTS_NAME, VQATrainConfig, run

_spec = importlib.util.spec_from_file_location(
    "rsivqa_train_make", Path(__file__).parent / "data" / "rsivqa_train" / "make.py"
)
make_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_data)

pytestmark = pytest.mark.slow  # trains real (tiny) heads with torch: seconds, not milliseconds

FAST = VQATrainConfig(hidden_grid=(0, 16), weight_decay_grid=(1e-3,), epochs=150, threads=1)


def _img(colour: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
    arr[..., make_data.COLOURS.index(colour)] = 220
    return arr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_data.make(tmp_path_factory.mktemp("rsivqa_train"))
    out = tmp_path_factory.mktemp("weights")
    result = run(root, out, FAST, model=skylens.load("fake"), log=lambda m: None)
    return root, out, result


def test_training_learns_count_and_location_beyond_chance(trained):
    _, out, result = trained
    heads = result["heads"]
    assert set(heads) == {"scene", "presence", "count", "location"}
    for kind in ("count", "location"):  # three answers each: chance is 33%
        assert heads[kind]["train_questions"] == 24
        assert heads[kind]["train_accuracy"] > 80.0
        assert heads[kind]["test_accuracy"] > 60.0
    assert result["data"]["malformed_lines_skipped"] == 1
    assert result["data"]["images"] == {"train": 24, "val": 6, "test": 6}
    for suffix in (".safetensors", ".json", ".md"):
        assert (out / WEIGHTS_NAME).with_suffix(suffix).is_file()
    card = json.loads((out / WEIGHTS_NAME).with_suffix(".json").read_text())
    assert card["heads"]["count"]["answers"] == ["five", "two", "zero"]
    assert "comparison" in card["missing_heads"]
    assert "count" in (out / WEIGHTS_NAME).with_suffix(".md").read_text()


def test_training_is_reproducible(trained, tmp_path):
    root, out, _ = trained
    run(root, tmp_path, FAST, model=skylens.load("fake"), log=lambda m: None)
    from safetensors.numpy import load_file

    a, b = load_file(str(out / WEIGHTS_NAME)), load_file(str(tmp_path / WEIGHTS_NAME))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)


def test_weights_round_trip_and_answer(trained):
    from skylens.datasets import load_image

    root, out, result = trained
    ans = load_answerer(skylens.load("fake"), out / WEIGHTS_NAME)
    assert isinstance(ans, TrainedAnswerer)
    right = {"count": 0, "location": 0, "scene": 0}
    test_images = range(31, make_data.N_IMAGES + 1)  # the held-out images
    for n in test_images:
        image = load_image(root / "ucm_captions" / "images" / f"{n}.jpg")
        colour = make_data.colour_of(n)
        a = ans.answer(image, "How many cars in the picture?")
        assert a.supported and a.kind == "count" and 0 < a.confidence <= 1
        right["count"] += a.text == make_data.COUNT[colour]
        a = ans.answer(image, "What is the location of the cars in this picture?")
        right["location"] += a.text == make_data.LOCATION[colour]
        a = ans.answer(image, "What is the theme of this picture?")
        right["scene"] += a.text == make_data.SCENE[colour]
    for kind, n_right in right.items():  # the loaded heads score what training measured
        assert 100.0 * n_right / len(test_images) == pytest.approx(
            result["heads"][kind]["test_accuracy"], abs=0.01
        )


def test_untrained_kinds_and_unseen_objects_are_refused_with_reason(trained):
    _, out, _ = trained
    ans = load_answerer(skylens.load("fake"), out / WEIGHTS_NAME)
    red = _img("red")
    a = ans.answer(red, "Are there more buildings than roads?")
    assert (a.kind, a.supported, a.text) == ("comparison", False, CANNOT)
    assert "no such questions" in a.reason
    a = ans.answer(red, "Is the road wide?")
    assert (a.kind, a.supported) == ("yes_no", False)
    a = ans.answer(red, "How many airplanes are there?")
    assert not a.supported and "car" in a.reason and "airplanes" in a.reason
    # presence about an object training never asked about goes to the zero-shot path
    a = ans.answer(red, "Is there a river in this image?")
    assert a.supported and a.text in ("yes", "no") and a.reason.startswith("zero-shot")


def test_card_mismatch_is_refused_naming_the_file(trained, tmp_path):
    _, out, _ = trained
    with pytest.raises(ModelError, match=WEIGHTS_NAME + ".*version 'fake-v1'.*'fake-other'"):
        load_answerer(skylens.load("fake:other"), out / WEIGHTS_NAME)
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(out / WEIGHTS_NAME), framework="numpy") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    tensors["count.mu"] = tensors["count.mu"][:-1]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ModelError, match="bad.safetensors.*count head"):
        load_answerer(skylens.load("fake"), bad)
    save_file(tensors, str(bad), metadata={})
    with pytest.raises(ModelError, match="bad.safetensors: no skylens-vqa metadata"):
        load_answerer(skylens.load("fake"), bad)


def test_default_answerer_falls_back_to_zero_shot_only_without_weights(trained, tmp_path):
    _, out, _ = trained
    model = skylens.load("fake", cache=False)  # the answerer is cached on the model instance
    fallback = default_answerer(model, tmp_path / "absent.safetensors")
    assert isinstance(fallback, ZeroShotAnswerer)
    a = fallback.answer(_img("red"), "How many cars in the picture?")
    assert not a.supported and "absent.safetensors" in a.reason
    assert default_answerer(model) is fallback  # cached on the model
    fresh = skylens.load("fake", cache=False)
    assert isinstance(default_answerer(fresh, out / WEIGHTS_NAME), TrainedAnswerer)
    with pytest.raises(ModelError):
        default_answerer(skylens.load("fake:other", cache=False), out / WEIGHTS_NAME)
