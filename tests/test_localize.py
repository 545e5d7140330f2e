"""Semantic localization on tiny generated GeoTIFFs with the fake colour encoder."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import typer
from affine import Affine
from rasterio.warp import transform as warp_transform
from typer.testing import CliRunner

import skylens
from skylens.cli import app as skylens_app
from skylens.errors import InputError
from skylens.tasks.localize import localize

ORIGIN = (500_000.0, 4_500_000.0)  # UTM 18N metres
PIXEL = 10.0


def write_scene(path: Path, *, size: int = 128, nodata_rows: int = 0) -> Path:
    """Green scene, a red 32x32 block at rows 64..96, cols 32..64, a blue one top-right."""
    arr = np.zeros((3, size, size), np.uint8)
    arr[:] = np.array([40, 180, 50], np.uint8)[:, None, None]
    arr[:, 64:96, 32:64] = np.array([220, 20, 20], np.uint8)[:, None, None]
    arr[:, 0:32, 96:128] = np.array([20, 20, 220], np.uint8)[:, None, None]
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32618",
        transform=Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]),
    )
    if nodata_rows:
        arr[:, :nodata_rows] = 0
        profile["nodata"] = 0
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
    return path


@pytest.fixture
def fake():
    return skylens.load("fake")


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene.tif")


def test_finds_red_block_with_polygon(scene, fake):
    res = localize(scene, "red", fake, tile=32, stride=16, top=3)
    assert res.heatmap.shape == (7, 7)
    best = res.regions[0]
    assert best.window == (32, 64, 32, 32) and best.cell == (4, 2)
    assert best.relative > 0 and best.score == pytest.approx(float(np.nanmax(res.heatmap)))
    lon, lat = warp_transform(
        "EPSG:32618", "EPSG:4326", [ORIGIN[0] + 32 * PIXEL], [ORIGIN[1] - 64 * PIXEL]
    )
    assert best.geometry["coordinates"][0][0] == pytest.approx([lon[0], lat[0]], abs=1e-7)
    # regions do not overlap and are ranked
    wins = [r.window for r in res.regions]
    for k, a in enumerate(wins):
        for b in wins[k + 1 :]:
            assert not (
                a[0] < b[0] + b[2]
                and b[0] < a[0] + a[2]
                and a[1] < b[1] + b[3]
                and b[1] < a[1] + a[3]
            )
    assert [r.rank for r in res.regions] == [1, 2, 3]
    assert [r.score for r in res.regions] == sorted([r.score for r in res.regions], reverse=True)


def test_other_phrase_other_place(scene, fake):
    res = localize(scene, "blue", fake, tile=32, stride=32, top=1)
    assert res.regions[0].window == (96, 0, 32, 32)


def test_to_dict_geojson_and_png(scene, fake, tmp_path):
    res = localize(scene, "red", fake, tile=32, stride=32, top=2)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["grid_shape"] == [4, 4] and len(d["heatmap"]) == 4 and len(d["regions"]) == 2
    assert "heatmap" not in res.to_dict(heatmap=False)
    gj = json.loads(json.dumps(res.to_geojson()))
    assert gj["features"][0]["geometry"]["type"] == "Polygon"
    assert gj["features"][0]["properties"]["rank"] == 1
    from PIL import Image

    img = np.asarray(Image.open(res.write_png(tmp_path / "heat.png")).convert("RGB"))
    assert img.shape == (128, 128, 3)
    # the red block is hottest: it stays red; a far green window keeps its green
    assert img[80, 48, 0] > 150 and img[120, 120, 1] > img[120, 120, 0]


def test_nodata_windows_are_skipped(tmp_path, fake):
    scene = write_scene(tmp_path / "s.tif", nodata_rows=32)
    res = localize(scene, "red", fake, tile=32, stride=32)
    assert res.chips_skipped_nodata == 4 and res.chips_scored == 12
    assert np.isnan(res.heatmap[0]).all()
    assert res.regions[0].window == (32, 64, 32, 32)


def test_bad_input(scene, fake):
    with pytest.raises(InputError, match="phrase is empty"):
        localize(scene, "  ", fake)
    with pytest.raises(InputError, match="larger than the scene"):
        localize(scene, "red", fake, tile=256)
    with pytest.raises(InputError, match="stride"):
        localize(scene, "red", fake, tile=32, stride=64)
    with pytest.raises(InputError, match="top"):
        localize(scene, "red", fake, tile=32, top=0)


def test_reads_windows_only(scene, fake, monkeypatch):
    """No read of the whole scene: every pixel read names a window."""
    from skylens.imagery.raster import Raster

    seen = []
    original = Raster.read

    def spy(self, window=None, *args, **kwargs):
        seen.append(window)
        return original(self, window, *args, **kwargs)

    monkeypatch.setattr(Raster, "read", spy)
    localize(scene, "red", fake, tile=32, stride=32)
    assert seen and all(w is not None and w[2] == w[3] == 32 for w in seen)


def _app() -> typer.Typer:
    return skylens_app


def test_cli_localize(scene, tmp_path):
    runner = CliRunner()
    args = ["localize", str(scene), "red", "--model", "fake", "--tile", "32", "--stride", "16"]
    res = runner.invoke(_app(), args + ["--top", "2"])
    assert res.exit_code == 0, res.output
    assert "(32, 64, 32, 32)" in res.output.splitlines()[2]
    png = tmp_path / "h.png"
    res = runner.invoke(_app(), args + ["--format", "geojson", "--out-png", str(png)])
    assert res.exit_code == 0 and png.is_file()
    assert json.loads(res.output)["features"][0]["properties"]["window"] == [32, 64, 32, 32]
    res = runner.invoke(_app(), ["localize", str(scene), "", "--model", "fake"])
    assert res.exit_code == 2 and "phrase is empty" in res.output


def test_cli_localize_html_is_self_contained(scene):
    args = ["localize", str(scene), "red", "--model", "fake", "--tile", "32", "--stride", "32"]
    res = CliRunner().invoke(_app(), args + ["--top", "2", "--format", "html"])
    assert res.exit_code == 0, res.output
    page = res.output
    assert page.startswith("<!doctype html>") and "http" not in page and "<script" not in page
    (src,) = re.findall(r'src="([^"]+)"', page)
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(src.removeprefix("data:image/png;base64,"))))
    assert img.format == "PNG" and img.size == (128, 128)
    ranks = re.findall(
        r"<tr><td>(\d)</td><td>([-\d.]+)</td><td>[-+\d.]+</td><td>([^<]+)</td>", page
    )
    assert [(r, w) for r, _, w in ranks] == [("1", "(32, 64, 32, 32)"), ("2", ranks[1][2])]
    assert ranks[1][2] != "(32, 64, 32, 32)" and float(ranks[0][1]) >= float(ranks[1][1])
