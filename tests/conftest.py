"""Shared test fixtures: a deterministic fake encoder and the location of the real data.

The fake encoder (``fake`` scheme) maps an image to its mean colour and a text to colour words, in
one 8-d space, so that search and classification tests can assert real ranking behaviour in
milliseconds: a red image is nearest to "red", a green one to "green".
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from skylens.models.base import ImageTextEncoder, ModelCard, l2_normalize, register_backend

COLOURS = {"red": 0, "green": 1, "blue": 2}
FAKE_DIM = 8


class FakeEncoder(ImageTextEncoder):
    """Colour-space encoder: dims 0-2 are mean R, G, B; dims 3-7 a hash of the text/brightness."""

    def __init__(self, variant: str = "") -> None:
        self.card = ModelCard(
            name="fake" + (f":{variant}" if variant else ""),
            version="fake-" + (variant or "v1"),
            image_size=32,
            embed_dim=FAKE_DIM,
            source="tests/conftest.py",
        )
        self.calls = 0

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(images), FAKE_DIM), np.float32)
        for i, im in enumerate(images):
            im = np.asarray(im, np.float32)
            if im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(f"fake encoder wants HxWx3, got {im.shape}")
            rgb = im.reshape(-1, 3).mean(0) / 255.0
            out[i, :3] = rgb - rgb.mean() + 1e-3
            out[i, 3] = 0.05
        return l2_normalize(out)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), FAKE_DIM), np.float32)
        for i, t in enumerate(texts):
            words = t.lower().replace(",", " ").split()
            for w in words:
                if w in COLOURS:
                    out[i, COLOURS[w]] += 1.0
            h = hashlib.sha256(t.encode()).digest()
            out[i, 4:] = np.frombuffer(h[:4], np.uint8) / 2550.0
            out[i, 3] = 0.05
        return l2_normalize(out)


@register_backend("fake", "deterministic colour encoder for tests", "fake")
def _load_fake(rest: str) -> FakeEncoder:
    return FakeEncoder(rest)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


def _shared_data() -> Path:
    return Path(
        os.environ.get(
            "SKYLENS_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
        )
    ).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; tests marked ``data`` skip cleanly when it is absent."""
    root = _shared_data()
    if not (root / "ucm_landuse").is_dir():
        pytest.skip(f"real data not found at {root} (set SKYLENS_DATA)")
    return root


# The fast tier runs without Java: METEOR and the PTB tokenizer start a JVM (seconds each).
JAVA_TESTS = os.environ.get("SKYLENS_JAVA_TESTS") == "1"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``java`` unless SKYLENS_JAVA_TESTS=1."""
    if JAVA_TESTS:
        return
    skip = pytest.mark.skip(reason="runs Java: set SKYLENS_JAVA_TESTS=1 to include it")
    for item in items:
        if item.get_closest_marker("java"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_java_in_the_fast_tier(request, monkeypatch):
    """Hide ``java`` from code under test (METEOR then reports itself unavailable) unless
    SKYLENS_JAVA_TESTS=1 or the test is marked ``java``."""
    if JAVA_TESTS or request.node.get_closest_marker("java"):
        return
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **kw: None if cmd == "java" else which(cmd, *a, **kw)
    )
