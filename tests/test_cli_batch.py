"""Many questions in one call (one model load): ``search --queries``, ``classify``/``caption``
with ``--format jsonl``; and the shape of the CLI package (thin faces, STYLE.md #8 and #14)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from skylens.cli import app
from skylens.models.base import Captioner, ModelCard, register_backend, unregister_backend

runner = CliRunner()
CLI = Path(__file__).resolve().parents[1] / "src" / "skylens" / "cli"


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, rgb in {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}.items():
        Image.fromarray(np.full((40, 40, 3), rgb, np.uint8)).save(folder / f"{name}.png")
    return folder


def test_search_queries_file_answers_every_line_as_json_lines(tmp_path):
    imgs = _images(tmp_path / "imgs")
    idx = tmp_path / "idx"
    assert (
        runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake"]).exit_code
        == 0
    )
    queries = tmp_path / "q.txt"
    queries.write_text("green\n\nblue\nred\n", encoding="utf-8")
    r = runner.invoke(app, ["search", str(idx), "--queries", str(queries), "--k", "1"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["query"] for row in rows] == ["green", "blue", "red"]
    assert [Path(row["hits"][0]["path"]).stem for row in rows] == ["green", "blue", "red"]
    r = runner.invoke(app, ["search", str(idx), "red", "--queries", str(queries)])
    assert r.exit_code == 2 and "one of TEXT" in r.output
    r = runner.invoke(app, ["search", str(idx), "--queries", str(imgs / "red.png")])
    assert r.exit_code == 2 and "not UTF-8" in r.output


def test_search_jsonl_prints_one_hit_a_line(tmp_path):
    imgs = _images(tmp_path / "imgs")
    idx = tmp_path / "idx"
    runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake"])
    r = runner.invoke(app, ["search", str(idx), "blue", "--k", "3", "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 3 and Path(hits[0]["path"]).stem == "blue"


def test_classify_jsonl_one_line_an_image(tmp_path):
    imgs = _images(tmp_path / "imgs")
    r = runner.invoke(app, ["classify", str(imgs), "--labels", "red,green,blue", "--model", "fake",
                            "-f", "jsonl", "--top", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {Path(row["source"]).stem: row["labels"][0] for row in rows} == {
        "red": "red", "green": "green", "blue": "blue",
    }  # fmt: skip


class _Counting(Captioner):
    loads = 0

    def __init__(self) -> None:
        type(self).loads += 1
        type(self).last = self
        self.card = ModelCard(name="countcap", version="c1", image_size=32, embed_dim=1)
        self.batches: list[int] = []

    def caption_images(self, images, *, beam=3, max_tokens=40):
        self.batches.append(len(images))
        return [f"mean {int(np.mean(im))}" for im in images]


def test_caption_many_files_one_model_load_in_batches(tmp_path):
    imgs = tmp_path / "many"
    imgs.mkdir()
    for i in range(20):
        Image.fromarray(np.full((16, 16, 3), i + 1, np.uint8)).save(imgs / f"{i:02d}.png")
    (imgs / "zz_broken.png").write_bytes(b"not a png")
    register_backend("countcap", "counting captioner")(lambda rest: _Counting())
    try:
        r = runner.invoke(app, ["caption", str(imgs), "--model", "countcap", "-f", "jsonl"])
    finally:
        unregister_backend("countcap")
    assert r.exit_code == 1, r.output  # one file failed; the others are captioned
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["caption"] for row in rows[:20]] == [f"mean {i + 1}" for i in range(20)]
    assert rows[20]["caption"] is None and "zz_broken.png" in rows[20]["error"]
    assert _Counting.loads == 1 and _Counting.last.batches == [16, 4]  # tasks.caption.BATCH


def test_the_cli_package_is_thin():
    """No CLI module imports skylens.index (storage is reached through tasks) or exceeds 300
    lines, and every command takes --format as the one OutputFormat enum."""
    for path in sorted(CLI.glob("*.py")):
        lines = path.read_text().count("\n")
        assert lines <= 300, f"{path.name}: {lines} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "skylens.index" or n.startswith("skylens.index.") for n in names), (
                f"{path.name} imports {names}"
            )
