"""The CLI is callable from tests: parse -> task -> format, with clear errors and exit codes."""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from skylens.cli import app

runner = CliRunner()


def _archive(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for name, rgb in {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}.items():
        a = np.zeros((48, 48, 3), np.uint8)
        a[:] = rgb
        Image.fromarray(a).save(d / f"{name}.png")
    return d


def test_index_then_search_json_and_geojson(tmp_path):
    d = _archive(tmp_path)
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(d), "--index", str(idx), "--model", "fake"])
    assert r.exit_code == 0, r.output
    assert "3 chips added" in r.output
    r = runner.invoke(app, ["index", str(d), "--index", str(idx), "--model", "fake"])
    assert "0 chips added" in r.output and "3 already present" in r.output
    r = runner.invoke(app, ["search", str(idx), "green", "--k", "2", "--format", "json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert Path(hits[0]["path"]).stem == "green" and len(hits) == 2
    r = runner.invoke(
        app, ["search", str(idx), "--image", str(d / "blue.png"), "--format", "geojson"]
    )
    fc = json.loads(r.stdout)
    assert (
        fc["type"] == "FeatureCollection"
        and Path(fc["features"][0]["properties"]["path"]).stem == "blue"
    )


def test_search_table_and_bad_bbox(tmp_path):
    d = _archive(tmp_path)
    idx = tmp_path / "idx"
    runner.invoke(app, ["index", str(d), "--index", str(idx), "--model", "fake"])
    r = runner.invoke(app, ["search", str(idx), "red"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "red.png" in r.output
    r = runner.invoke(app, ["search", str(idx), "red", "--bbox", "1,2,3"])
    assert r.exit_code == 2 and "W,S,E,N" in r.output


def test_search_missing_index_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["search", str(tmp_path / "nope"), "red"])
    assert r.exit_code == 2
    assert "nope" in r.output and "Traceback" not in r.output


def test_classify_formats(tmp_path):
    d = _archive(tmp_path)
    r = runner.invoke(
        app,
        [
            "classify",
            str(d),
            "--labels",
            "red,green,blue",
            "--model",
            "fake",
            "--top",
            "1",
            "--format",
            "csv",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [ln.split(",") for ln in r.stdout.strip().splitlines()[1:]]
    assert {Path(row[0]).stem: row[2] for row in rows} == {
        "blue": "blue",
        "green": "green",
        "red": "red",
    }
    r = runner.invoke(
        app,
        [
            "classify",
            str(d / "red.png"),
            "--labels",
            "red,green",
            "--model",
            "fake",
            "--format",
            "json",
        ],
    )
    assert json.loads(r.stdout)[0]["labels"][0] == "red"


def test_classify_zero_byte_file_names_it(tmp_path):
    bad = tmp_path / "empty.tif"
    bad.write_bytes(b"")
    r = runner.invoke(app, ["classify", str(bad), "--labels", "a,b", "--model", "fake"])
    assert r.exit_code == 1
    assert "empty.tif" in r.output and "Traceback" not in r.output


def test_index_with_corrupt_file_keeps_the_rest(tmp_path):
    d = _archive(tmp_path)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(d), "--index", str(idx), "--model", "fake"])
    assert r.exit_code == 1
    assert "broken.jpg" in r.output and "3 chips added" in r.output


def test_models_lists_backends():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "default" in r.output and "openclip" in r.output


def test_eval_classify_and_compare_on_a_tiny_scene_dataset(tmp_path):
    """`skylens eval` on a generated UC Merced layout, with the fake colour encoder."""
    root = tmp_path / "UCMerced_LandUse" / "Images"
    for cls, rgb in {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}.items():
        (root / cls).mkdir(parents=True)
        for i in range(3):
            a = np.zeros((16, 16, 3), np.uint8)
            a[:] = rgb
            Image.fromarray(a).save(root / cls / f"{cls}{i:02d}.tif")
    out_a = tmp_path / "a.json"
    r = runner.invoke(
        app,
        [
            "eval",
            "classify",
            "--dataset",
            "ucm_landuse",
            "--root",
            str(root.parent),
            "--model",
            "fake",
            "--split",
            "all",
            "--out",
            str(out_a),
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(out_a.read_text())
    assert report["result"]["metrics"]["top1"] == 100.0
    assert report["metadata"]["model"] == "fake" and report["metadata"]["samples"]["images"] == 9
    assert out_a.with_suffix(".md").is_file()
    r = runner.invoke(app, ["eval", "compare", str(out_a), str(out_a)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "top1" in r.output


def test_eval_refuses_a_model_without_the_capability(tmp_path):
    r = runner.invoke(
        app,
        [
            "eval",
            "caption",
            "--dataset",
            "ucm_captions",
            "--root",
            str(tmp_path),
            "--model",
            "fake",
        ],
    )
    assert r.exit_code == 2 and "captioner" in r.output


def test_eval_names_the_missing_layout(tmp_path):
    r = runner.invoke(
        app,
        [
            "eval",
            "retrieval",
            "--dataset",
            "ucm_captions",
            "--root",
            str(tmp_path),
            "--model",
            "fake",
        ],
    )
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_ask_answers_and_refuses(tmp_path):
    d = _archive(tmp_path)
    r = runner.invoke(
        app,
        [
            "ask",
            str(d / "red.png"),
            "How many cars are there?",
            "--model",
            "fake",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    ans = json.loads(r.stdout)
    assert ans["supported"] is False and ans["text"] == "cannot answer with this model"
    r = runner.invoke(app, ["ask", str(d / "red.png"), "  ", "--model", "fake"])
    assert r.exit_code == 2 and "empty question" in r.output
