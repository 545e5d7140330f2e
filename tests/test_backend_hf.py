"""The ``hf:`` backend, run through ``skylens.load`` on tiny randomly initialised models.

A session fixture writes two model folders with ``save_pretrained``, offline: a LLaVA-style
vision-language model (a 1-layer CLIP vision tower on 32x32 pixels, 8-pixel patches, a 1-layer
Llama) and a text-only Llama, both with a word-level tokenizer built with ``tokenizers`` and a chat
template that marks each turn ``<|role|> ... <|end|>``. Their replies are gibberish by design;
the tests assert structure: the chat template and the image tokens reach the model, one caption per
image, the token budget and beam count reach ``generate``, the ``Answer`` fields, the errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import skylens
from skylens.errors import CapabilityError, InputError, ModelError
from skylens.models.base import Answerer, Captioner, TextGenerator
from skylens.models.messages import image_message
from skylens.tasks.ask import ask_image

pytest.importorskip("transformers")

WORDS = (
    "a the of an image aerial with is there are many river road buildings trees yes no two".split()
)
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<|user|>", "<|assistant|>", "<|system|>"]
SPECIAL += ["<|end|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image> {% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    " <|end|> {% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
IMAGE_TOKENS = 16  # (32 / 8)^2 patches; the CLS token is dropped ("default" feature strategy)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL[4:],
    )
    return fast, vocab


def _text_config(vocab):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def _words_only(model, vocab) -> None:
    # a random model may stop at once; suppressing every special token (EOS included) makes each
    # reply exactly max_tokens vocabulary words, so the tests can check the budget reaches generate
    model.generation_config.suppress_tokens = [vocab[t] for t in SPECIAL]


def write_tiny_models(root: Path) -> dict:
    """Save the tiny vision-language and text-only models under ``root`` (``vlm/``, ``llm/``)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaForCausalLM,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok, vocab = _tokenizer()
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(vocab),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    vlm = LlavaForConditionalGeneration(cfg).eval()
    _words_only(vlm, vocab)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=TEMPLATE,
    )
    vlm.save_pretrained(root / "vlm")
    processor.save_pretrained(root / "vlm")

    llm = LlamaForCausalLM(_text_config(vocab)).eval()
    _words_only(llm, vocab)
    text_tok, _ = _tokenizer()
    text_tok.chat_template = TEMPLATE
    llm.save_pretrained(root / "llm")
    text_tok.save_pretrained(root / "llm")
    return {"vlm": root / "vlm", "llm": root / "llm", "vocab": vocab}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    return write_tiny_models(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="session")
def vlm(tiny_models):
    return skylens.load(f"hf:{tiny_models['vlm']}", cache=False)


@pytest.fixture(scope="session")
def llm(tiny_models):
    return skylens.load(f"hf:{tiny_models['llm']}", cache=False)


def _image(seed: int, h: int = 40, w: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_vision_language_model_loads_with_every_language_capability(vlm, tiny_models):
    assert isinstance(vlm, Captioner) and isinstance(vlm, Answerer)
    assert isinstance(vlm, TextGenerator)
    assert vlm.name == f"hf:{tiny_models['vlm']}"
    assert vlm.card.extra["vision"] is True and vlm.card.extra["device"] == "cpu"
    assert vlm.card.extra["architecture"] == "LlavaForConditionalGeneration"
    assert len(vlm.version) == 16


def test_prompt_goes_through_chat_template_with_image_tokens_and_pixels(vlm, tiny_models):
    vocab = tiny_models["vocab"]
    two = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image(0)},
                {"type": "image", "image": _image(1, 64, 64)},
                {"type": "text", "text": "is there a river"},
            ],
        }
    ]
    inputs = vlm.prepare_inputs(two)
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == vocab["<|user|>"] and ids[-1] == vocab["<|assistant|>"]
    assert ids.count(vocab["<image>"]) == 2 * IMAGE_TOKENS
    assert tuple(inputs["pixel_values"].shape) == (2, 3, 32, 32)
    text_ids = [i for i in ids if i >= len(SPECIAL)]
    assert text_ids == [vocab[w] for w in ("is", "there", "a", "river")]


def test_caption_images_gives_one_caption_per_image_within_the_budget(vlm, tiny_models):
    calls = []
    real_generate = vlm.model.generate

    def recording_generate(**kwargs):
        calls.append({k: kwargs[k] for k in ("max_new_tokens", "num_beams")})
        assert kwargs["pixel_values"].shape[0] == 1  # each image is captioned on its own
        return real_generate(**kwargs)

    vlm.model.generate = recording_generate
    try:
        caps = vlm.caption_images([_image(2), _image(3, 20, 90), _image(4)], beam=2, max_tokens=5)
    finally:
        del vlm.model.generate
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    for cap in caps:  # the reply alone (no echoed prompt), exactly the token budget, from the vocab
        assert len(cap.split()) == 5 and set(cap.split()) <= set(WORDS)
    assert calls == [{"max_new_tokens": 5, "num_beams": 2}] * 3


def test_answer_returns_an_answer_with_the_question_kind(vlm, monkeypatch):
    monkeypatch.setattr(vlm, "answer_max_tokens", 3)
    ans = ask_image(vlm, _image(5), "  is there a river?  ")
    assert ans.question == "is there a river?" and ans.kind == "presence"
    assert ans.supported and len(ans.text.split()) == 3 and "generated by hf:" in ans.reason
    assert vlm.answer(_image(5), "how many trees are there?").kind == "count"
    with pytest.raises(InputError, match="empty question"):
        vlm.answer(_image(5), "   ")


def test_generate_text_and_images_through_the_same_model(vlm, llm):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "is there a road"},
    ]
    for model in (vlm, llm):
        reply = model.generate(msgs, max_tokens=3)
        assert len(reply.split()) == 3
    assert len(vlm.generate(image_message(_image(6), "is there a road"), max_tokens=4).split()) == 4


def test_text_only_model_refuses_images(llm):
    assert isinstance(llm, TextGenerator) and not isinstance(llm, Answerer)
    assert llm.card.extra["vision"] is False
    with pytest.raises(CapabilityError, match="text-only"):
        llm.generate(image_message(_image(7), "what is this?"))
    with pytest.raises(CapabilityError, match="cannot answer questions about images"):
        ask_image(llm, _image(7), "is there a river?")
    with pytest.raises(CapabilityError, match="Captioner"):
        llm.require(Captioner)


def test_bad_names_and_folders_are_refused_with_the_path(tmp_path, tiny_models):
    with pytest.raises(ModelError, match="model folder not found"):
        skylens.load(f"hf:{tmp_path / 'nope'}", cache=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"empty: not a transformers model folder"):
        skylens.load(f"hf:{tmp_path / 'empty'}", cache=False)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a transformers model folder"):
        skylens.load(f"hf:{tmp_path / 'weights.bin'}", cache=False)
    with pytest.raises(ModelError, match="bad option 'colour=red'"):
        skylens.load(f"hf:{tiny_models['vlm']}#colour=red", cache=False)
    with pytest.raises(ModelError, match="hf: needs a model"):
        skylens.load("hf:", cache=False)


def test_model_without_chat_template_is_refused(tmp_path, tiny_models):
    folder = tmp_path / "plain"
    shutil.copytree(tiny_models["llm"], folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="has no chat template"):
        skylens.load(f"hf:{folder}", cache=False)


def test_bad_images_and_budgets_are_refused(vlm):
    with pytest.raises(InputError, match=r"image 1: expected an HxWx3 uint8"):
        vlm.caption_images([_image(8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(InputError, match=r"messages\[0\]"):
        vlm.generate([{"role": "robot", "content": "hi"}])
    with pytest.raises(ModelError, match="max_tokens must be at least 1"):
        vlm.generate([{"role": "user", "content": "hi"}], max_tokens=0)


def test_stream_generate_yields_the_same_reply_piece_by_piece(vlm, llm):
    msgs = image_message(_image(9), "is there a road")
    pieces = list(vlm.stream_generate(msgs, max_tokens=6))
    assert len(pieces) > 1
    assert "".join(pieces).split() == vlm.generate(msgs, max_tokens=6).split()
    with pytest.raises(CapabilityError, match="text-only"):
        list(llm.stream_generate(msgs))
