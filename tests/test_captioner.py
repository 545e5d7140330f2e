"""The default captioner: words, beam search, weights and their card, the CLI, and training."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from skylens.cli import app
from skylens.errors import CapabilityError, InputError, ModelError
from skylens.models.base import Captioner, ModelCard, register_backend
from skylens.models.captioner import (
    CaptionerConfig,
    DefaultCaptioner,
    Vocabulary,
    beam_search,
    build_decoder,
    save_captioner,
    tokenize,
)

runner = CliRunner()
DATA = Path(__file__).parent / "data"

# -- words -------------------------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_on_punctuation():
    assert tokenize("There are two tennis-courts, near  a ROAD.") == [
        "there",
        "are",
        "two",
        "tennis",
        "courts",
        "near",
        "a",
        "road",
    ]
    assert tokenize("  ...  ") == []


def test_vocabulary_build_encode_decode():
    vocab = Vocabulary.build(["a road , a road .", "A river"], min_count=2)
    assert vocab.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.words[4:] == ["a", "road"]  # most frequent first; "river" seen once is dropped
    assert vocab.encode("a river road") == [vocab.index["a"], vocab.unk, vocab.index["road"]]
    ids = [vocab.bos, vocab.index["a"], vocab.index["road"], vocab.eos, vocab.index["a"]]
    assert vocab.decode(ids) == "A road."  # stops at <eos>, sentence case, full stop
    assert vocab.decode([vocab.eos]) == ""


# -- beam search on a hand-made decoder --------------------------------------------------------
PAD, BOS, EOS, UNK, A, B, C = range(7)
V = 7


def table_decoder(table: dict[tuple[int, ...], dict[int, float]], default: dict[int, float]):
    """A decoder from a table: next-word probabilities per prefix (after <bos>)."""
    calls = []

    def log_probs(rows: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        out = np.full((len(rows), V), -np.inf)
        for i, prefix in enumerate(prefixes):
            probs = table.get(tuple(int(t) for t in prefix[1:]), default)
            for word, p in probs.items():
                out[i, word] = math.log(p)
        return out

    log_probs.calls = calls
    return log_probs


# greedy takes A (0.55) then C (0.34) -> p = 0.187; the beam finds B <eos> -> p = 0.405
TRAP = {
    (): {A: 0.55, B: 0.45},
    (A,): {C: 0.34, EOS: 0.33, A: 0.33},
    (A, C): {EOS: 1.0},
    (B,): {EOS: 0.9, C: 0.1},
}


def sequence_logp(table, seq) -> float:
    words = [*seq, EOS]
    return sum(math.log(table[tuple(words[:i])][w]) for i, w in enumerate(words))


def test_beam_finds_a_more_probable_sequence_than_greedy():
    dec = table_decoder(TRAP, {EOS: 1.0})
    (greedy,) = beam_search(dec, 1, bos=BOS, eos=EOS, beam=1, length_penalty=0.0)
    (beamed,) = beam_search(dec, 1, bos=BOS, eos=EOS, beam=2, length_penalty=0.0)
    assert greedy == [A, C]
    assert beamed == [B]
    assert sequence_logp(TRAP, beamed) > sequence_logp(TRAP, greedy)


def test_beam_search_decodes_images_independently():
    trap = table_decoder(TRAP, {EOS: 1.0})

    def two_images(rows, prefixes):
        out = trap(rows, prefixes)
        out[rows == 1] = -np.inf  # image 1 always says "C"
        out[rows == 1, C if prefixes.shape[1] == 1 else EOS] = 0.0
        return out

    assert beam_search(two_images, 2, bos=BOS, eos=EOS, beam=3, length_penalty=0.0) == [[B], [C]]


def test_eos_ends_a_sequence_and_is_never_first_or_returned():
    eager = table_decoder({(): {EOS: 0.99, A: 0.01}, (A,): {EOS: 0.9, B: 0.1}}, {EOS: 1.0})
    for beam in (1, 3):
        (seq,) = beam_search(eager, 1, bos=BOS, eos=EOS, beam=beam, length_penalty=0.0)
        assert seq == [A]


def test_max_tokens_is_respected():
    chatty = table_decoder({}, {A: 0.5, B: 0.49, EOS: 0.01})
    for beam in (1, 3):
        for max_tokens in (1, 3, 7):
            (seq,) = beam_search(chatty, 1, bos=BOS, eos=EOS, beam=beam, max_tokens=max_tokens)
            assert len(seq) == max_tokens
            assert EOS not in seq


def test_length_penalty_favours_longer_sequences():
    # "B" alone: p = 0.5; "A A A": p = 0.5 * 0.9^3 = 0.36 but a better mean log-probability
    table = {
        (): {A: 0.5, B: 0.5},
        (B,): {EOS: 1.0},
        (A,): {A: 0.9, EOS: 0.1},
        (A, A): {A: 0.9, EOS: 0.1},
        (A, A, A): {EOS: 0.9, A: 0.1},
    }
    dec = table_decoder(table, {EOS: 1.0})
    assert beam_search(dec, 1, bos=BOS, eos=EOS, beam=4, length_penalty=0.0) == [[B]]
    assert beam_search(dec, 1, bos=BOS, eos=EOS, beam=4, length_penalty=1.0) == [[A, A, A]]


def test_banned_words_are_never_generated_and_bad_arguments_refused():
    dec = table_decoder({(): {UNK: 0.9, A: 0.1}}, {EOS: 1.0})
    assert beam_search(dec, 1, bos=BOS, eos=EOS, beam=2, banned=(UNK,)) == [[A]]
    with pytest.raises(InputError, match="beam"):
        beam_search(dec, 1, bos=BOS, eos=EOS, beam=0)
    with pytest.raises(InputError, match="max_tokens"):
        beam_search(dec, 1, bos=BOS, eos=EOS, max_tokens=0)


# -- weights and their card ----------------------------------------------------------------------


class StubTower:
    """Stands in for the image tower: a digest, and a grid that encodes the mean colour."""

    def __init__(self, digest: str = "tower-abc") -> None:
        self.digest = digest
        self.conv_head = None
        self.batches: list[int] = []

    def run(self, pixels: np.ndarray, *, with_fmap: bool = False):
        self.batches.append(len(pixels))
        fmap = np.zeros((len(pixels), 1280, 7, 7), np.float32)
        fmap[:, :3] = pixels.mean((2, 3))[:, :, None, None]
        return SimpleNamespace(fmap=fmap)


def tiny_captioner(path: Path, *, digest: str = "tower-abc") -> Path:
    """A randomly initialised, very small captioner saved at ``path``."""
    import torch

    vocab = Vocabulary.build(["a red square", "a green square"])
    cfg = CaptionerConfig(
        vocab_size=len(vocab),
        d_model=16,
        layers=1,
        heads=2,
        ffn=32,
        max_len=8,
        image_tower=digest,
    )
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in build_decoder(cfg).state_dict().items()}
    save_captioner(path, state, cfg, vocab)
    return path


def test_missing_weights_say_how_to_train_them(tmp_path):
    with pytest.raises(CapabilityError, match="skylens train caption"):
        DefaultCaptioner(StubTower(), tmp_path / "nothing.safetensors")


def test_a_card_for_another_tower_is_refused(tmp_path):
    path = tiny_captioner(tmp_path / "cap.safetensors", digest="another-tower")
    with pytest.raises(ModelError, match=r"cap\.safetensors.*another-tower.*tower-abc"):
        DefaultCaptioner(StubTower("tower-abc"), path)


def test_a_vocabulary_that_does_not_fit_the_weights_is_refused(tmp_path):
    path = tiny_captioner(tmp_path / "cap.safetensors")
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["vocab"].append("extra")  # one word more than the embedding rows
    doc["config"]["vocab_size"] += 1
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"cap\.safetensors.*vocabulary has 9 words"):
        DefaultCaptioner(StubTower(), path)


def test_weights_round_trip_and_caption_any_image_size(tmp_path):
    path = tiny_captioner(tmp_path / "cap.safetensors")
    tower = StubTower()
    cap = DefaultCaptioner(tower, path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((32, 32), (300, 120))]
    texts = cap.caption_images(images, beam=2, max_tokens=4)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert all(len(t.rstrip(".").split()) <= 4 for t in texts)
    assert tower.batches == [2]
    assert cap.caption_images([], beam=2) == []
    with pytest.raises(InputError, match="beam"):
        cap.caption_images(images, beam=0)
    with pytest.raises(ModelError, match="uint8"):
        cap.caption_images([np.zeros((8, 8), np.float32)])


# -- the CLI -------------------------------------------------------------------------------------


class ColourCaptioner(Captioner):
    """A deterministic captioner for CLI tests: names the dominant colour."""

    def __init__(self) -> None:
        self.card = ModelCard(name="colourcap", version="colourcap-v1", image_size=32, embed_dim=0)

    def caption_images(self, images, *, beam=3, max_tokens=40):
        names = ("red", "green", "blue")
        return [
            f"A {names[int(np.asarray(im).reshape(-1, 3).mean(0).argmax())]} scene."
            for im in images
        ]


@register_backend("colourcap", "deterministic colour captioner for tests", "colourcap")
def _load_colourcap(rest: str) -> ColourCaptioner:
    return ColourCaptioner()


def write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        p = folder / f"img{i}.png"
        Image.fromarray(np.full((24, 40, 3), colour, np.uint8)).save(p)
        paths.append(p)
    return paths


def test_cli_captions_a_folder_as_json(tmp_path):
    write_images(tmp_path / "imgs")
    res = runner.invoke(
        app, ["caption", str(tmp_path / "imgs"), "--model", "colourcap", "-f", "json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [Path(r["source"]).name for r in rows] == ["img0.png", "img1.png", "img2.png"]
    assert [r["caption"] for r in rows] == ["A red scene.", "A green scene.", "A blue scene."]


def test_cli_table_and_a_broken_file_among_good_ones(tmp_path):
    write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"")
    res = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "--model", "colourcap"])
    assert res.exit_code == 1
    assert "A green scene." in res.stdout
    assert "broken.png" in res.output


def test_cli_refuses_a_model_without_captioning_and_bad_options(tmp_path):
    (img,) = write_images(tmp_path / "imgs")[:1]
    res = runner.invoke(app, ["caption", str(img), "--model", "fake"])
    assert res.exit_code == 2
    assert "cannot do Captioner" in res.output
    res = runner.invoke(app, ["caption", str(img), "--model", "colourcap", "--beam", "0"])
    assert res.exit_code == 2 and "--beam" in res.output
    res = runner.invoke(app, ["caption", str(img), "--model", "colourcap", "-f", "xml"])
    assert res.exit_code == 2 and "--format" in res.output
    res = runner.invoke(app, ["caption", str(tmp_path / "missing.png"), "--model", "colourcap"])
    assert res.exit_code == 2 and "missing.png" in res.output


@pytest.mark.slow
def test_cli_default_model_captions_every_image(tmp_path):
    write_images(tmp_path / "imgs")
    res = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-f", "json", "--beam", "2"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 3
    assert all(r["error"] is None and len(r["caption"].split()) >= 2 for r in rows)


# -- training ------------------------------------------------------------------------------------


def _ucm_maker():
    spec = importlib.util.spec_from_file_location("ucm_make", DATA / "ucm_captions" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_training_on_a_tiny_dataset_lowers_the_loss_and_round_trips(tmp_path):
    import torch

    from skylens.models import towers
    from skylens.models.default import DEFAULT_WEIGHTS, load_heads
    from skylens.train.caption import CaptionTrainConfig, run, write_card

    root = _ucm_maker().make(tmp_path / "ucm", image_ext=".png")
    cfg = CaptionTrainConfig(
        d_model=32, layers=1, heads=2, ffn=64, dropout=0.0, epochs=30, batch_size=3, lr=3e-3,
        eval_every=10, beams=(1, 2), length_penalties=(0.0,), threads=1,
    )  # fmt: skip
    threads = torch.get_num_threads()
    try:
        result = run(root, tmp_path / "out", cfg, score_test=False, cache=tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)
    losses = result["config"]["train"]["history"]["loss"]
    assert losses[-1] < 0.7 * losses[0]
    weights = tmp_path / "out" / "skylens-lite-captioner.safetensors"
    assert weights.is_file() and weights.with_suffix(".json").is_file()
    card = write_card(tmp_path / "out", result, command="skylens train caption")
    assert "tower features digest" in card.read_text().lower()

    heads, _ = load_heads(DEFAULT_WEIGHTS)
    tower = towers.ImageTower(threads=1, conv_head=heads.get("tower.conv_head"))
    cap = DefaultCaptioner(tower, weights)
    assert cap.config.length_penalty == result["config"]["length_penalty"]
    # the words it learned: every caption is built from the training vocabulary
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "imgs").glob("*"))]
    texts = cap.caption_images(images, beam=2)
    words = set(cap.vocab.words)
    assert all(t and set(tokenize(t)) <= words for t in texts)
    assert any("farmland" in t or "plane" in t or "baseball" in t for t in texts)


# -- the committed captioner on real data ---------------------------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_committed_captioner_scores_on_real_ucm_test_images(shared_data):
    from skylens.datasets import get_dataset, load_image
    from skylens.evaluate.captioning import CaptionEvaluator
    from skylens.models import load

    ds = get_dataset("ucm_captions", shared_data / "ucm_captions", split="test")
    picks = list(range(0, len(ds), 10))  # 21 images across the scene classes
    model = load("default")
    preds = model.caption_images([load_image(ds[i]) for i in picks], beam=3)
    refs = [ds[i]["captions"] for i in picks]
    scores = CaptionEvaluator(("BLEU", "CIDEr"))(preds, refs)["metrics"]
    assert scores["BLEU-1"] > 0.6
    assert scores["CIDEr"] > 1.5
