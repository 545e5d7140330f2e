"""The ``openclip:`` backend on a tiny random CLIP saved to disk and loaded by name, as users do.

The checkpoints mimic the real layouts: a plain state dict (RemoteCLIP, GeoRSCLIP), an open_clip
training checkpoint with ``module.`` prefixes (SkyCLIP) and safetensors. The reference embeddings
come from the open_clip model and open_clip's own eval transform, not from skylens code.
"""

import json
import sys

import numpy as np
import pytest

import skylens
from skylens.errors import MissingDependencyError, ModelError

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
PIL_Image = pytest.importorskip("PIL.Image")

TINY = {  # a 2-layer ViT and text transformer: builds in milliseconds
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Config, the reference model and its weights in three on-disk layouts."""
    d = tmp_path_factory.mktemp("tinyclip")
    (d / "tiny.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    ref = open_clip.CLIP(**TINY).eval()
    state = ref.state_dict()
    torch.save(state, d / "plain.pt")
    wrapped = {
        "epoch": 20,
        "name": "skyclip",
        "state_dict": {"module." + k: v for k, v in state.items()},
    }
    torch.save(wrapped, d / "epoch_20.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "tiny.safetensors"))
    return d, ref


def _images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (40, 52, 3), dtype=np.uint8),
        rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    ]


def _reference_images(ref, mean=None, std=None):
    tf = open_clip.image_transform(32, is_train=False, mean=mean, std=std)
    with torch.no_grad():
        e = ref.encode_image(torch.stack([tf(PIL_Image.fromarray(im)) for im in _images()])).numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_loads_by_name_and_matches_open_clip(ckpt):
    d, ref = ckpt
    enc = skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{d / 'plain.pt'}")
    assert (enc.embed_dim, enc.image_size) == (16, 32)
    assert enc.name == f"openclip:skylens-tiny={d / 'tiny.json'}:{d / 'plain.pt'}"
    assert enc.card.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    e = enc.encode_images(_images())
    assert e.shape == (2, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(e, _reference_images(ref), atol=1e-5)
    texts = ["an airport with two runways", "a harbor"]
    with torch.no_grad():
        direct = ref.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)).numpy()
    np.testing.assert_allclose(
        enc.encode_texts(texts), direct / np.linalg.norm(direct, axis=1, keepdims=True), atol=1e-5
    )


def test_deterministic_and_batch_independent(ckpt):
    d, _ = ckpt
    enc = skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{d / 'plain.pt'}")
    a, b = enc.encode_images(_images()), enc.encode_images(_images())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(enc.encode_images(_images(), batch_size=1), a, atol=1e-6)
    assert enc.encode_images([]).shape == (0, 16) and enc.encode_texts([]).shape == (0, 16)
    with pytest.raises(ModelError, match="HxWx3 uint8"):
        enc.encode_images([np.zeros((8, 8, 4), np.uint8)])


def test_skyclip_and_safetensors_layouts_load_the_same_weights(ckpt):
    d, _ = ckpt
    cfg = d / "tiny.json"
    plain = skylens.load(f"openclip:skylens-tiny={cfg}:{d / 'plain.pt'}")
    for other in ("epoch_20.pt", "tiny.safetensors"):
        enc = skylens.load(f"openclip:skylens-tiny={cfg}:{d / other}")
        np.testing.assert_allclose(
            enc.encode_images(_images()), plain.encode_images(_images()), atol=1e-6
        )
        assert enc.version == plain.version  # version digests the weights, not the file bytes


def test_config_beside_checkpoint_with_its_own_normalisation(ckpt, tmp_path):
    d, ref = ckpt
    hub_style = {"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(hub_style))
    (tmp_path / "model.pt").write_bytes((d / "plain.pt").read_bytes())
    enc = skylens.load(f"openclip:skylens-tiny-rs:{tmp_path / 'model.pt'}")
    assert enc.card.mean == (0.5, 0.5, 0.5) and enc.card.std == (0.25, 0.25, 0.25)
    np.testing.assert_allclose(
        enc.encode_images(_images()), _reference_images(ref, (0.5,) * 3, (0.25,) * 3), atol=1e-5
    )
    plain = skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{d / 'plain.pt'}")
    assert enc.version != plain.version  # same weights, other preprocessing: other embeddings


def test_wrong_shape_is_refused_naming_file_arch_and_key(ckpt, tmp_path):
    d, _ = ckpt
    state = torch.load(d / "plain.pt", weights_only=True)
    state["text_projection"] = torch.zeros(32, 8)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as exc:
        skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{tmp_path / 'bad.pt'}")
    msg = str(exc.value)
    assert (
        "bad.pt" in msg and "skylens-tiny" in msg and "text_projection (32, 8) vs (32, 16)" in msg
    )


def test_missing_and_unexpected_keys_are_listed(ckpt, tmp_path):
    d, _ = ckpt
    state = torch.load(d / "plain.pt", weights_only=True)
    del state["visual.proj"]
    state["visual.extra_head.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, tmp_path / "partial.pt")
    with pytest.raises(
        ModelError, match=r"1 missing \(visual.proj\); 1 unexpected \(visual.extra_head"
    ):
        skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{tmp_path / 'partial.pt'}")


def test_a_real_arch_refuses_weights_of_another(ckpt):
    d, _ = ckpt  # tiny weights named as ViT-B-32: the #771 mistake, caught before any embedding
    with pytest.raises(ModelError, match="does not fit open_clip architecture 'ViT-B-32'"):
        skylens.load(f"openclip:ViT-B-32:{d / 'plain.pt'}")


def test_bad_names_say_what_is_wrong(ckpt, tmp_path):
    d, _ = ckpt
    with pytest.raises(ModelError, match=r"nope\.pt: checkpoint not found"):
        skylens.load(f"openclip:ViT-B-32:{tmp_path / 'nope.pt'}")
    with pytest.raises(ModelError, match="unknown open_clip architecture 'NoSuchArch-1'"):
        skylens.load(f"openclip:NoSuchArch-1:{d / 'plain.pt'}")
    with pytest.raises(ModelError, match="neither a checkpoint file nor a pretrained tag"):
        skylens.load("openclip:ViT-B-32:no_such_tag")
    with pytest.raises(ModelError, match="expected openclip:ARCH:CHECKPOINT"):
        skylens.load("openclip:ViT-B-32")
    with pytest.raises(ModelError, match="built-in open_clip architecture"):
        skylens.load(f"openclip:ViT-B-32={d / 'tiny.json'}:{d / 'plain.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt: not a readable checkpoint"):
        skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{tmp_path / 'junk.pt'}")


def test_missing_open_clip_names_the_extra(ckpt, monkeypatch):
    d, _ = ckpt
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"skylens\[openclip\]"):
        skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{d / 'plain.pt'}", cache=False)


def test_georsclip_training_layout_loads(ckpt, tmp_path):
    d, ref = ckpt
    renamed = {
        ("image_backbone." + k[len("visual.") :])
        if k.startswith("visual.")
        else "text_backbone." + k: v
        for k, v in ref.state_dict().items()
    }
    torch.save({"epoch": 2, "state_dict": renamed}, tmp_path / "rs5m_epoch_2.pt")
    enc = skylens.load(f"openclip:skylens-tiny={d / 'tiny.json'}:{tmp_path / 'rs5m_epoch_2.pt'}")
    np.testing.assert_allclose(enc.encode_images(_images()), _reference_images(ref), atol=1e-5)
    assert "RS5M" in enc.card.citation


def test_hub_names_resolve_to_files(ckpt, tmp_path, monkeypatch):
    d, ref = ckpt
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY, "preprocess_cfg": {}})
    )
    fetched = []

    def fake_hub_file(repo, filename, revision=None):
        fetched.append((repo, filename, revision))
        if filename == "open_clip_model.safetensors":
            raise ModelError(f"hf-hub:{repo}: cannot fetch {filename}")  # repo ships only .bin
        return tmp_path / "open_clip_config.json" if filename.endswith(".json") else d / "plain.pt"

    monkeypatch.setattr("skylens.models.openclip._hub_file", fake_hub_file)
    enc = skylens.load("openclip:hf-hub:acme/tiny-clip@v1")
    assert enc.card.source == "https://huggingface.co/acme/tiny-clip"
    assert ("acme/tiny-clip", "open_clip_pytorch_model.bin", "v1") in fetched
    np.testing.assert_allclose(enc.encode_images(_images()), _reference_images(ref), atol=1e-5)
    enc = skylens.load(
        f"openclip:skylens-tiny={d / 'tiny.json'}:hf-hub:acme/rs-clip/sub/RemoteCLIP-tiny.pt"
    )
    assert fetched[-1] == ("acme/rs-clip", "sub/RemoteCLIP-tiny.pt", None)


def test_pretrained_tag_takes_its_preprocessing_and_quickgelu(ckpt, monkeypatch):
    d, _ = ckpt
    open_clip.add_model_config(d / "tiny.json")  # a "built-in" arch named tiny
    tag = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "quick_gelu": True}
    monkeypatch.setattr(
        open_clip, "get_pretrained_cfg", lambda arch, t: tag if t == "toy_s1m" else {}
    )
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg: str(d / "plain.pt"))
    enc = skylens.load("openclip:tiny:toy_s1m")
    assert enc.card.mean == (0.5, 0.5, 0.5) and enc.card.extra["quick_gelu"] is True
    assert type(enc.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
