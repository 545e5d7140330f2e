"""The embedded default model: loads offline, checks its card, and ranks real images sensibly."""

import json

import numpy as np
import pytest
from PIL import Image

import skylens
from skylens.errors import ModelError
from skylens.models.default import DEFAULT_WEIGHTS, SkylensLite, load_heads, save_heads

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite():
    return skylens.load("default")


def test_embeddings_are_normalised_and_sized(lite):
    rng = np.random.default_rng(0)
    imgs = [
        rng.integers(0, 255, (300, 200, 3), dtype=np.uint8),
        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
    ]
    e = lite.encode_images(imgs)
    t = lite.encode_texts(["an airport", "a forest"])
    assert e.shape == (2, lite.embed_dim) and t.shape == (2, lite.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, rtol=1e-4)
    # deterministic
    np.testing.assert_allclose(lite.encode_images(imgs), e, atol=1e-6)


def test_onnx_tower_matches_eager_torch(lite):
    import torch

    from skylens.models.towers import preprocess

    rng = np.random.default_rng(1)
    px = preprocess([rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(2)])
    with torch.inference_mode():
        _, _, pooled, logits = lite.image_tower.torch_module()(torch.from_numpy(px))
    out = lite.image_tower.run(px)
    np.testing.assert_allclose(out.pooled, pooled.numpy(), atol=1e-3)
    np.testing.assert_allclose(out.logits, logits.numpy(), atol=1e-3)


def test_bad_input_array_is_refused(lite):
    with pytest.raises(ModelError, match="HxWx3 uint8"):
        lite.encode_images([np.zeros((10, 10), np.uint8)])


def test_card_mismatch_is_refused(tmp_path):
    tensors, cfg = load_heads(DEFAULT_WEIGHTS)
    cfg.std = (0.229, 0.224, 0.225)  # ImageNet std: not what the Lite weights expect
    bad = tmp_path / "bad.safetensors"
    save_heads(bad, tensors, cfg)
    with pytest.raises(ModelError, match="normalisation"):
        SkylensLite(bad)


def test_not_a_heads_file_is_refused(tmp_path):
    from safetensors.numpy import save_file

    p = tmp_path / "x.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(ModelError, match="not a skylens-lite heads file"):
        SkylensLite(p)


def test_model_card_ships_with_scores():
    card = DEFAULT_WEIGHTS.with_suffix(".md")
    assert card.is_file()
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["config"]["train"]["scores"]["ucm_captions_test_retrieval"]["mR"] > 40


@pytest.mark.data
def test_airplane_ranks_airport_caption_above_farmland(lite, shared_data):
    path = shared_data / "ucm_landuse" / "Images" / "airplane" / "airplane05.jpg"
    if not path.exists():
        path = sorted((shared_data / "ucm_landuse" / "Images" / "airplane").iterdir())[0]
    img = np.asarray(Image.open(path).convert("RGB"))
    e = lite.encode_images([img])[0]
    t = lite.encode_texts(["airplanes parked at an airport", "a piece of farmland"])
    assert e @ t[0] > e @ t[1]


@pytest.mark.data
def test_zero_shot_on_real_tiles(lite, shared_data):
    from skylens.tasks.classify import classify_arrays

    root = shared_data / "ucm_landuse" / "Images"
    names = {"beach": "beach", "forest": "forest", "harbor": "harbor", "runway": "runway"}
    imgs, truth = [], []
    for folder, name in names.items():
        for p in sorted((root / folder).iterdir())[-3:]:
            imgs.append(np.asarray(Image.open(p).convert("RGB")))
            truth.append(name)
    preds = classify_arrays(lite, imgs, list(names.values()), top=1)
    acc = np.mean([p[0][0] == t for p, t in zip(preds, truth, strict=True)])
    assert acc >= 0.75


def test_text_only_calls_never_build_the_image_tower():
    model = SkylensLite()  # a fresh instance: the cached one may have built its tower already
    emb = model.encode_texts(["a harbor with boats"])
    model.text_classifier(["forest", "beach"])
    assert emb.shape == (1, model.embed_dim) and model._image_tower is None


def test_calibrated_scores_are_probabilities_and_gibberish_scores_below_real_queries(
    lite, shared_data
):
    root = shared_data / "ucm_landuse" / "Images"
    if not root.is_dir():
        pytest.skip("needs ../shared/data/ucm_landuse")
    folders = ("harbor", "forest", "runway", "beach", "parkinglot", "baseballdiamond")
    images = [
        np.asarray(Image.open(p).convert("RGB"))
        for f in folders
        for p in sorted((root / f).iterdir())[-4:]
    ]
    x = lite.encode_images(images)
    queries = ["boats in a harbor", "a dense forest", "an airport runway", "zzzz qqqq"]
    q = lite.encode_texts(queries)
    p = lite.calibrate_scores(q, q @ x.T)
    assert p.shape == (4, len(images)) and (p >= 0).all() and (p <= 1).all()
    best = p.max(1)
    assert best[3] < best[:3].min()
    assert best[3] < lite.text_match_threshold < best[:3].min()


def test_calibration_is_in_the_card_and_confidences_stay_in_unit_interval(lite):
    assert 0 < lite.zero_shot_temperature <= 1 and 0 <= lite.unsure_margin < 1
    from skylens.tasks.classify import classify_arrays

    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    for _, scores in classify_arrays(lite, imgs, ["forest", "river", "harbor"], top=3):
        assert all(0.0 <= s <= 1.0 for s in scores) and abs(sum(scores) - 1) < 1e-3
