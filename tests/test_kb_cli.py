"""The faces of the knowledge base and chat: ``skylens kb ...``, ``skylens chat``, ``ask --kb``.

Thin faces: these check parsing, output formats and one-line errors; behaviour is tested in
``test_kb.py``, ``test_rag.py`` and ``test_chat.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skylens.cli import app
from skylens.models.base import register_backend

pytest.importorskip("bm25s", reason="the knowledge base needs bm25s (pip install 'skylens[kb]')")
spec = importlib.util.spec_from_file_location(
    "kb_make", Path(__file__).parent / "data" / "kb" / "make.py"
)
kb_make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_make)
register_backend("kbwords", "bag-of-words test encoder (tests/data/kb/make.py)", "kbwords")(
    kb_make.WordsEncoder
)
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("kbcli")
    paths = kb_make.write_sources(root / "src")
    res = runner.invoke(app, ["kb", "build", str(paths["harbour"].parent), str(paths["red"].parent),
                              "--kb", str(root / "kb"), "--model", "kbwords", "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return root, paths, json.loads(res.stdout)


def test_build_info_search_ask(built):
    root, paths, report = built
    assert report["added"] >= 6 and {Path(s["source"]).name for s in report["skipped"]} == {
        "empty.txt",
        "scan.pdf",
    }
    info = json.loads(runner.invoke(app, ["kb", "info", str(root / "kb"), "-f", "json"]).stdout)
    assert info["model_name"] == "kbwords" and info["passages"] == report["total"]
    res = runner.invoke(
        app, ["kb", "search", str(root / "kb"), "runways long", "-k", "2", "-f", "json"]
    )
    hits = json.loads(res.stdout)
    assert len(hits) == 2 and Path(hits[0]["source"]).name == "airport.html"
    res = runner.invoke(app, ["kb", "ask", str(root / "kb"), "How long are runways?", "-f", "json"])
    ans = json.loads(res.stdout)
    assert ans["supported"] and ans["citations"][0]["n"] == 1 and "4,000 metres" in ans["answer"]
    res = runner.invoke(app, ["kb", "ask", str(root / "kb"), "How long are runways?"])
    assert res.exit_code == 0 and "[1]" in res.stdout and "airport.html" in res.stdout
    res = runner.invoke(app, ["ask", str(paths["red"]), "what is on the red roofs?", "--kb", str(root / "kb"), "-f", "json"])  # fmt: skip
    assert res.exit_code == 0 and json.loads(res.stdout)["citations"]


def test_errors_are_one_line(built, tmp_path):
    root, _, _ = built
    res = runner.invoke(app, ["kb", "info", str(tmp_path / "none")])
    assert (
        res.exit_code == 2
        and "not a skylens knowledge base" in res.output
        and "Traceback" not in res.output
    )
    res = runner.invoke(
        app, ["kb", "search", str(root / "kb"), "boats", "--model", "kbwords:other"]
    )
    assert res.exit_code == 2 and "built with model 'kbwords'" in res.output
    res = runner.invoke(
        app, ["kb", "build", str(tmp_path / "missing.md"), "--kb", str(tmp_path / "k2")]
    )
    assert res.exit_code == 2 and "no such file or folder" in res.output


def test_chat_script_prints_one_json_object_per_turn(built, tmp_path):
    root, paths, _ = built
    script = tmp_path / "turns.txt"
    script.write_text(
        "# a comment\nshow me the red\n\nhow many are there?\nWhat do storage tanks hold?\n"
    )
    res = runner.invoke(app, ["chat", str(paths["red"]), "--kb", str(root / "kb"), "--model", "kbwords",
                              "--script", str(script), "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    turns = [json.loads(line) for line in res.stdout.splitlines()]
    assert [t["expert"] for t in turns] == ["localize", "vqa", "knowledge"]
    assert turns[1]["resolved"] == "how many red are there?"
    assert turns[2]["citations"] and all(0 <= t["confidence"] <= 1 for t in turns)
    res = runner.invoke(app, ["chat", "--script", str(tmp_path / "nope.txt"), "--model", "kbwords"])
    assert res.exit_code == 2 and "script not found" in res.output
