"""skylens curate: the thin CLI over skylens.curate, through typer's CliRunner."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skylens.cli import app

DATA = Path(__file__).parent / "data"

pytest.importorskip("imagehash")  # the curate extra: pip install skylens[curate]
pytest.importorskip("webdataset")
pytest.importorskip("langdetect")
runner = CliRunner()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_curate", DATA / "curate" / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(tmp_path_factory.mktemp("curate"))


def _ok(*args: str) -> str:
    result = runner.invoke(app, ["curate", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_pipeline_through_the_cli(raw, tmp_path):
    w = tmp_path
    out = json.loads(
        _ok("from-folders", str(raw / "pool"), "--out", str(w / "pool"), "--format", "json")
    )
    assert out["records"] == 10 and out["step"] == "from-folders"
    text = _ok("dedupe", str(w / "pool"), "--out", str(w / "clean"), "--against", str(raw / "eval"))
    assert "removed 3: phash match with evaluation image" in text
    assert "removed 1: exact duplicate within the dataset" in text
    _ok("from-captions", str(raw / "captions"), "--out", str(w / "caps"))
    _ok("merge", str(w / "clean"), str(w / "caps"), "--out", str(w / "all"))
    _ok("filter", str(w / "all"), "--out", str(w / "train"), "--split", "train")
    _ok("instruct", str(w / "train"), "--out", str(w / "inst"))
    assert "samples" in _ok(
        "export", str(w / "inst"), "--out", str(w / "wds"), "--format", "webdataset"
    )
    assert list((w / "wds").glob("shard-*.tar"))
    stats = json.loads(
        _ok("stats", str(w / "inst"), "--format", "json", "--html", str(w / "s.html"))
    )
    assert stats["records_with_conversations"] == stats["records"] > 0
    assert (w / "s.html").is_file()
    steps = [s["command"] for s in json.loads((w / "inst" / "manifest.json").read_text())["steps"]]
    assert steps == ["merge", "filter", "instruct"]


def test_errors_are_one_line_with_exit_code_2(raw, tmp_path):
    result = runner.invoke(
        app, ["curate", "from-folders", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app, ["curate", "export", str(raw / "pool"), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2 and "not a complete curated dataset" in result.output
