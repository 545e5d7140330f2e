"""Regression tests for the CLI findings of the hostile-input probe (issue 18): every one of
these printed a traceback, a wrong message or a wrong result before its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from skylens.cli import app
from skylens.models.base import Captioner, ModelCard, register_backend, unregister_backend

runner = CliRunner()
LONG = "x" * 300  # one path component over the 255-byte limit of common file systems


def _png(path: Path, rgb=(200, 30, 30), size=48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(path)
    return path


def _images(folder: Path) -> Path:
    for name, rgb in {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}.items():
        _png(folder / f"{name}.png", rgb)
    return folder


def _clean(r, code: int) -> None:
    """Exit ``code`` with a message and no traceback."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


@pytest.fixture
def index(tmp_path) -> tuple[Path, Path]:
    imgs = _images(tmp_path / "imgs")
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake"])
    assert r.exit_code == 0, r.output
    return imgs, idx


# -- Rich markup in user text --------------------------------------------------------------------
def test_markup_in_names_labels_and_queries_prints_as_itself(tmp_path):
    imgs = _images(tmp_path / "a[/x][red]b")
    idx = tmp_path / "i[/x][red]"
    r = runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake"])
    _clean(r, 0)
    assert "i[/x][red]" in r.output
    wide = {"COLUMNS": "400"}
    r = runner.invoke(app, ["search", str(idx), "red [/x] [red]"], env=wide)
    _clean(r, 0)
    assert "red [/x] [red]" in r.output and "a[/x][red]b" in r.output
    r = runner.invoke(
        app, ["classify", str(imgs), "--labels", "[/x],[red]green", "--model", "fake"], env=wide
    )
    _clean(r, 0)
    assert "[/x]" in r.output and "[red]green" in r.output
    r = runner.invoke(app, ["search", str(tmp_path / "no[/x]pe"), "red"])
    _clean(r, 2)
    assert "no[/x]pe" in r.output


def test_install_hints_keep_the_extra():
    r = runner.invoke(app, ["models"], env={"COLUMNS": "400"})
    _clean(r, 0)
    assert "skylens[openclip]" in r.output and "pip install 'skylens')" not in r.output


# -- paths the file system refuses ------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["index", f"{{d}}/{LONG}.png", "--index", "{d}/idx", "--model", "fake"],
        ["index", "{d}/imgs", "--index", f"{{d}}/{LONG}", "--model", "fake"],
        ["classify", f"{{d}}/{LONG}.png", "--labels", "a,b", "--model", "fake"],
        ["caption", f"{{d}}/{LONG}.png"],
        ["search", f"{{d}}/{LONG}", "red"],
        ["search", "{d}/idx", "--image", f"{{d}}/{LONG}.png"],
        ["info", f"{{d}}/{LONG}"],
        ["ask", f"{{d}}/{LONG}.png", "what is this?", "--model", "fake"],
        ["localize", f"{{d}}/{LONG}.png", "red", "--model", "fake"],
        ["change", f"{{d}}/{LONG}.png", "{d}/imgs/red.png", "--model", "fake"],
    ],
    ids=lambda a: a[0],
)
def test_a_path_component_over_255_bytes_is_a_clear_error(index, args):
    d = str(index[0].parent)
    r = runner.invoke(app, [a.format(d=d) for a in args])
    assert r.exit_code in (1, 2), r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "too long" in r.output.lower()


def test_an_image_whose_name_is_not_utf8_is_read(tmp_path):
    name = os.fsdecode(b"scene\xff.png")
    folder = tmp_path / "odd"
    _png(folder / name, (10, 230, 10))
    r = runner.invoke(app, ["classify", str(folder), "--labels", "red,green", "-f", "json",
                            "--model", "fake"])  # fmt: skip
    _clean(r, 0)
    rows = json.loads(r.stdout)
    assert rows[0]["error"] is None and rows[0]["labels"][0] == "green"


# -- dates, numbers and limits ------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, value, hits",
    [
        ("--after", "0001-01-01T00:00:00+01:00", 3),  # before any image: no bound
        ("--before", "9999-12-31T23:59:59-14:00", 3),  # after any image: no bound
        ("--after", "9999-12-31T23:59:59-14:00", 0),
        ("--before", "0001-01-01T00:00:00+01:00", 0),
    ],
)
def test_extreme_dates_are_bounds_not_crashes(tmp_path, flag, value, hits):
    imgs = tmp_path / "imgs"
    for i, rgb in enumerate(((230, 10, 10), (10, 230, 10), (10, 10, 230))):
        _png(imgs / f"scene_2016040{i + 1}.png", rgb)  # dated by name
    idx = tmp_path / "idx"
    assert (
        runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake"]).exit_code
        == 0
    )
    r = runner.invoke(app, ["search", str(idx), "red", flag, value, "-f", "json"])
    _clean(r, 0)
    assert len(json.loads(r.stdout)["hits"]) == hits


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["index", "{d}/imgs", "--index", "{d}/idx2", "--model", "fake", "--batch", "0"],
            "--batch",
        ),
        (
            ["index", "{d}/imgs", "--index", "{d}/imgs/red.png/idx", "--model", "fake"],
            "is under the file",
        ),
        (["index", "{d}/imgs", "--index", "{d}/imgs/red.png", "--model", "fake"], "is a file"),
        (
            [
                "localize",
                "{d}/imgs/red.png",
                "red",
                "--model",
                "fake",
                "--tile",
                "16",
                "--out-png",
                "{d}",
            ],
            "is a folder",
        ),
        (
            ["classify", "{d}/imgs", "--labels-file", "{d}/imgs/red.png", "--model", "fake"],
            "not UTF-8",
        ),
        (
            ["classify", "{d}/imgs", "--labels", "red,green", "--top", "0", "--model", "fake"],
            "--top",
        ),
        (
            ["classify", "{d}/imgs", "--labels", "red,green", "--top", "-2", "--model", "fake"],
            "--top",
        ),
        (["search", "{d}/idx", "red", "--k", "0"], "number of hits"),
        (["localize", "{d}/imgs/red.png", "red", "--model", "fake", "--top", "0"], "--top"),
        (
            [
                "change",
                "{d}/imgs/red.png",
                "{d}/imgs/green.png",
                "--model",
                "fake",
                "--threshold",
                "nan",
            ],
            "--threshold",
        ),
        (
            ["localize", "{d}/imgs/red.png", "r" * 10_000, "--model", "fake", "--tile", "16"],
            "limit",
        ),
        (["serve", "--port", "99999"], "65535"),
        (["serve", "--port", "0"], "--port"),
        (["caption", "{d}/imgs", "--max-tokens", "0"], "--max-tokens"),
    ],
    ids=lambda a: a[0] if isinstance(a, list) else None,
)
def test_option_mistakes_are_refused_in_one_line(index, args, words):
    d = str(index[0].parent)
    r = runner.invoke(app, [a.format(d=d) for a in args])
    _clean(r, 2)
    assert words in r.output


@pytest.mark.parametrize("command", ["index", "classify", "caption"])
def test_an_empty_folder_is_an_error_naming_it(tmp_path, command):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    args = {
        "index": ["index", str(empty), "--index", str(tmp_path / "idx"), "--model", "fake"],
        "classify": ["classify", str(empty), "--labels", "a,b", "--model", "fake"],
        "caption": ["caption", str(empty)],
    }[command]
    r = runner.invoke(app, args)
    _clean(r, 2)
    assert "nothing-here" in r.output and "no image files" in r.output
    assert not (tmp_path / "idx").exists()


# -- damaged index ------------------------------------------------------------------------------
def _damage(idx: Path, how: str) -> None:
    table = idx / "lancedb" / "chips.lance"
    if how == "data file missing":
        next((table / "data").glob("*.lance")).unlink()
    else:
        for manifest in (table / "_versions").glob("*.manifest"):
            manifest.write_bytes(manifest.read_bytes()[:100])


@pytest.mark.parametrize("how", ["data file missing", "truncated manifest"])
@pytest.mark.parametrize("command", ["search", "info", "index", "serve"])
def test_a_damaged_index_is_one_clear_line(index, how, command):
    imgs, idx = index
    _damage(idx, how)
    args = {
        "search": ["search", str(idx), "red"],
        "info": ["info", str(idx)],
        "index": ["index", str(imgs), "--index", str(idx), "--model", "fake"],
        "serve": ["serve", "--index", str(idx), "--port", "8731"],  # refused before listening
    }[command]
    r = runner.invoke(app, args)
    if command == "index" and how == "data file missing" and r.exit_code == 0:
        return  # appending never reads the lost file: nothing to report
    _clean(r, 2)
    assert idx.name in r.output and "rebuild" in r.output.lower()
    assert ".cargo" not in r.output  # no Rust source paths of the storage library


# -- honest reports and strict JSON -------------------------------------------------------------
def test_failed_files_are_not_counted_as_indexed(tmp_path):
    imgs = _images(tmp_path / "imgs")
    whole = tmp_path / "whole.tif"
    Image.fromarray(np.full((96, 96, 3), 120, np.uint8)).save(whole)
    data = whole.read_bytes()  # opens (the header is intact), fails while its pixels are read
    (imgs / "truncated.tif").write_bytes(data[: len(data) // 3])
    r = runner.invoke(
        app, ["index", str(imgs), "--index", str(tmp_path / "idx"), "--model", "fake",
              "--tile", "32", "--overlap", "0"],
    )  # fmt: skip
    _clean(r, 1)
    assert "indexed 3 of 4 file(s), 1 failed" in r.output and "truncated.tif" in r.output
    added = int(r.output.split(" chips added")[0].split()[-1])
    assert f"{added} chips through the model" in r.output.replace("\n", " ")


class _Captions(Captioner):
    def __init__(self) -> None:
        self.card = ModelCard(name="hardcap", version="h1", image_size=32, embed_dim=1)

    def caption_images(self, images, *, beam=3, max_tokens=40):
        return ["a scene"] * len(images)


@pytest.fixture
def captioner():
    register_backend("hardcap", "captioner for the CLI hardening tests")(lambda rest: _Captions())
    yield "hardcap"
    unregister_backend("hardcap")


def test_index_caption_reports_the_chips_it_captioned_not_zero_per_second(index, captioner):
    imgs, idx = index  # indexed without captions: a re-run with --caption-model fills them
    r = runner.invoke(app, ["index", str(imgs), "--index", str(idx), "--model", "fake",
                            "--caption-model", captioner])  # fmt: skip
    _clean(r, 0)
    assert "captioned 3 chip(s)" in r.output
    assert "0.0 chips/s" not in r.output and "3 chips through the model" in r.output


def test_localize_json_is_strict_json(tmp_path):
    scene = _png(tmp_path / "scene.png", (230, 10, 10), size=64)
    r = runner.invoke(app, ["localize", str(scene), "red", "--model", "fake", "--tile", "64",
                            "-f", "json"])  # fmt: skip
    _clean(r, 0)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(r.stdout, parse_constant=refuse)
    assert data["phrase"] == "red"


def test_emit_json_turns_non_finite_numbers_into_null(capsys):
    from skylens.cli.common import emit_json

    emit_json({"a": float("nan"), "b": [np.float32("inf"), 1.5]})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [None, 1.5]}


# -- images with nothing to look at -------------------------------------------------------------
def _empty_rasters(folder: Path) -> dict[str, Path]:
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"all-nan": folder / "nan.tif", "all-nodata": folder / "nodata.tif"}
    profile = dict(driver="GTiff", width=32, height=32, count=3)
    with rasterio.open(paths["all-nan"], "w", dtype="float32", **profile) as ds:
        ds.write(np.full((3, 32, 32), np.nan, np.float32))
    with rasterio.open(paths["all-nodata"], "w", dtype="uint16", nodata=7, **profile) as ds:
        ds.write(np.full((3, 32, 32), 7, np.uint16))
    paths["1x1-black"] = _png(folder / "dot.png", (0, 0, 0), size=1)
    return paths


@pytest.mark.parametrize("kind", ["all-nan", "all-nodata", "1x1-black"])
def test_an_image_with_no_valid_pixels_gets_no_confident_answer(index, kind):
    imgs, idx = index
    bad = _empty_rasters(imgs.parent / "empty")[kind]
    r = runner.invoke(app, ["classify", str(bad), "--labels", "red,green", "--model", "fake",
                            "-f", "json"])  # fmt: skip
    _clean(r, 1)
    [row] = json.loads(r.stdout)
    assert row["labels"] == [] and bad.name in row["error"]
    r = runner.invoke(app, ["search", str(idx), "--image", str(bad), "-f", "json"])
    _clean(r, 2)
    assert bad.name in r.output
    r = runner.invoke(app, ["ask", str(bad), "what is this?", "--model", "fake"])
    _clean(r, 2)


def test_a_captioner_is_not_asked_about_an_empty_raster(tmp_path, captioner):
    bad = _empty_rasters(tmp_path)["all-nan"]
    r = runner.invoke(app, ["caption", str(bad), "--model", captioner, "-f", "json"])
    _clean(r, 1)
    [row] = json.loads(r.stdout)
    assert row["caption"] is None and "no valid pixels" in row["error"]
