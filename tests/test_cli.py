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
