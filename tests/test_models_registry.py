import numpy as np
import pytest

import skylens
from skylens.errors import CapabilityError, ModelError
from skylens.models.base import ImageTextEncoder, Model, ModelCard


def test_load_resolves_registered_scheme_and_caches():
    a = skylens.load("fake")
    b = skylens.load("fake")
    assert a is b
    assert a.name == "fake" and a.embed_dim == 8
    c = skylens.load("fake:other")
    assert c is not a and c.version == "fake-other"


def test_unknown_scheme_names_known_backends():
    with pytest.raises(ModelError) as exc:
        skylens.load("nosuch:thing")
    assert "nosuch" in str(exc.value) and "default" in str(exc.value)


def test_available_lists_builtin_backends():
    schemes = {b.scheme for b in skylens.available()}
    assert {"default", "openclip", "fake"} <= schemes


def test_require_refuses_missing_capability():
    class TextOnly(Model):
        card = ModelCard(name="textonly", version="1", image_size=0, embed_dim=0)

    with pytest.raises(CapabilityError, match="textonly"):
        TextOnly().require(ImageTextEncoder)


def test_fake_encoder_ranks_colours(fake_encoder):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 220
    green = np.zeros((16, 16, 3), np.uint8)
    green[..., 1] = 220
    img = fake_encoder.encode_images([red, green])
    txt = fake_encoder.encode_texts(["red", "green"])
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, rtol=1e-5)
    sim = img @ txt.T
    assert sim[0, 0] > sim[0, 1] and sim[1, 1] > sim[1, 0]
