"""The openclip backend, on a tiny randomly initialised CLIP saved to disk and loaded by name."""

import json

import numpy as np
import pytest
import torch

import skylens
from skylens.errors import ModelError

open_clip = pytest.importorskip("open_clip")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyclip")
    cfg = d / "skylens-tiny-clip.json"
    cfg.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms("skylens-tiny-clip")
    model.eval()
    plain = d / "plain.pt"
    torch.save(model.state_dict(), plain)
    wrapped = d / "wrapped.pt"  # open_clip training-checkpoint layout (SkyCLIP)
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, wrapped)
    return cfg, plain, wrapped, model


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 52, 3), dtype=np.uint8), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)]


def test_loads_by_name_and_matches_open_clip(tiny):
    cfg, plain, _, ref = tiny
    enc = skylens.load(f"openclip:{cfg}:{plain}")
    assert enc.embed_dim == 16 and enc.image_size == 32
    e = enc.encode_images(_images())
    assert e.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-5)
    # same pixels through open_clip's own model
    px = torch.from_numpy(enc._pixels(_images()))
    with torch.no_grad():
        direct = ref.encode_image(px).numpy()
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(e, direct, atol=1e-5)
    t = enc.encode_texts(["an airport", "a harbor"])
    tok = open_clip.get_tokenizer("skylens-tiny-clip")
    with torch.no_grad():
        dt = ref.encode_text(tok(["an airport", "a harbor"])).numpy()
    np.testing.assert_allclose(t, dt / np.linalg.norm(dt, axis=1, keepdims=True), atol=1e-5)


def test_wrapped_checkpoint_gives_same_embeddings(tiny):
    cfg, plain, wrapped, _ = tiny
    a = skylens.load(f"openclip:{cfg}:{plain}").encode_images(_images())
    b = skylens.load(f"openclip:{cfg}:{wrapped}").encode_images(_images())
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert skylens.load(f"openclip:{cfg}:{plain}").version.startswith("skylens-tiny-clip-")


def test_wrong_shapes_are_refused_naming_the_file(tiny, tmp_path):
    cfg, plain, _, _ = tiny
    state = torch.load(plain, weights_only=True)
    state["text_projection"] = torch.zeros(32, 8)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ModelError) as exc:
        skylens.load(f"openclip:{cfg}:{bad}")
    assert "bad.pt" in str(exc.value) and "text_projection" in str(exc.value)


def test_missing_checkpoint_and_unknown_arch(tiny, tmp_path):
    cfg, _, _, _ = tiny
    with pytest.raises(ModelError, match="not found"):
        skylens.load(f"openclip:{cfg}:{tmp_path / 'nope.pt'}")
    with pytest.raises(ModelError, match="unknown open_clip architecture"):
        skylens.load("openclip:NoSuchArch-1:/x.pt")
