"""Change on real-looking pairs: radiometric change, misregistration, pixel masks and their files.

Uses the fake colour encoder (tests/conftest.py) on generated textured GeoTIFFs, so it runs in
seconds; the LEVIR-CD check at the end needs ../shared/data (``data`` mark).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import skylens
from skylens.errors import InputError, SkylensError
from skylens.tasks.change import change

ORIGIN = (500_000.0, 4_500_000.0)  # UTM 18N metres, top-left corner
PIXEL = 0.5  # metres
SIZE = 128
BLOCK = (40, 72, 30, 30)  # planted change: row, col, height, width (pixels)


def texture(seed: int = 0) -> np.ndarray:
    """A green-brown field with smooth texture (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (SIZE // 8, SIZE // 8, 3))
    smooth = np.kron(noise, np.ones((8, 8, 1)))
    base = np.array([70, 110, 50], np.float32)
    return np.clip(base + 12 * smooth + rng.normal(0, 3, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def write(path: Path, rgb: np.ndarray, *, crs: str | None = "EPSG:32618") -> Path:
    profile = {
        "driver": "GTiff",
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "count": 3,
        "dtype": "uint8",
    }
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.moveaxis(rgb, -1, 0))
    return path


def planted_after(before: np.ndarray, shift: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """AFTER: a red roof-like block pasted, global brightness/contrast change, 2 px shift."""
    r, c, h, w = BLOCK
    after = before.astype(np.float32).copy()
    after[r : r + h, c : c + w] = (185, 60, 45)  # a red roof
    after = np.clip(1.25 * after + 15, 0, 255)
    after = np.roll(after, (shift, shift), axis=(0, 1)).astype(np.uint8)
    truth = np.zeros(before.shape[:2], bool)
    truth[r : r + h, c : c + w] = True
    return after, truth


@pytest.fixture
def fake():
    return skylens.load("fake")


@pytest.fixture
def planted(tmp_path):
    before = texture()
    after, truth = planted_after(before)
    return write(tmp_path / "before.tif", before), write(tmp_path / "after.tif", after), truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_identical_pair_reports_no_change(tmp_path, fake):
    p = write(tmp_path / "a.tif", texture())
    res = change(p, p, fake, tile=32)
    assert not res.changed and not res.mask.any()
    assert not res.uniform_change and not res.background_changed
    assert res.caption.startswith("No change detected")


def test_planted_change_found_despite_brightness_and_shift(planted, fake):
    before, after, truth = planted
    res = change(before, after, fake, tile=32)
    assert res.changed and not res.uniform_change
    assert iou(res.mask, truth) > 0.5
    # the largest region is the planted block, and little else is flagged
    assert res.regions[0].pixels == pytest.approx(truth.sum(), rel=0.4)
    assert res.mask[~truth].mean() < 0.05
    # chip scores rank the changed chips first
    changed_chip = res.scores[1, 2]
    assert changed_chip > np.nanmedian(res.scores)


def test_without_radiometric_matching_the_brightness_shift_would_dominate(fake):
    """The control for the test above: the fake encoder does see the global shift."""
    from skylens.tasks.change.scoring import match_radiometry

    rb = texture()
    ra, _ = planted_after(rb, shift=0)
    raw = 1 - float(np.sum(fake.encode_images([rb[:32, :32]]) * fake.encode_images([ra[:32, :32]])))
    matched = match_radiometry(ra, rb, np.ones(rb.shape[:2], bool))
    fixed = 1 - float(
        np.sum(fake.encode_images([rb[:32, :32]]) * fake.encode_images([matched[:32, :32]]))
    )
    assert fixed < raw / 2


def test_mask_geotiff_is_aligned_with_before(planted, fake, tmp_path):
    before, after, _ = planted
    res = change(before, after, fake, tile=32)
    out = res.write_mask(tmp_path / "out" / "mask.tif")
    with rasterio.open(out) as m, rasterio.open(before) as b:
        assert (m.width, m.height) == (b.width, b.height)
        assert m.transform == b.transform and m.crs == b.crs
        assert m.count == 1 and m.dtypes[0] == "uint8" and m.nodata == 255
        data = m.read(1)
    assert set(np.unique(data)) <= {0, 1}
    assert np.array_equal(data == 1, res.mask)


def test_geojson_areas_are_square_metres_of_the_mask(planted, fake, tmp_path):
    from pyproj import Geod
    from shapely.geometry import shape

    before, after, _ = planted
    res = change(before, after, fake, tile=32)
    gj = json.loads(res.write_geojson(tmp_path / "regions.geojson").read_text())
    assert gj["properties"]["area_unit"] == "m2"
    total = 0.0
    for f in gj["features"]:
        props = f["properties"]
        assert props["area_m2"] == pytest.approx(props["pixels"] * PIXEL * PIXEL)
        geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(shape(f["geometry"]))[0])
        assert geodesic == pytest.approx(props["area_m2"], rel=0.02)
        total += props["pixels"]
    assert total == res.mask.sum()


def test_no_crs_areas_are_pixels(tmp_path, fake):
    before = texture()
    after, _ = planted_after(before, shift=0)
    b, a = write(tmp_path / "b.tif", before, crs=None), write(tmp_path / "a.tif", after, crs=None)
    res = change(b, a, fake, tile=32)
    assert res.changed and res.area_unit == "px"
    assert all(g.area_m2 is None and g.geometry is None for g in res.regions)
    assert any("areas are in pixels" in w for w in res.warnings)
    assert " px)" in res.caption
    mask = res.write_mask(tmp_path / "mask.tif")
    with rasterio.open(mask) as m:
        assert m.crs is None and (m.width, m.height) == (SIZE, SIZE)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shift": -1}, "shift"),
        ({"cell": 0}, "cell"),
        ({"tile": 0}, "tile"),
        ({"tile": 999}, "larger"),
    ],
)
def test_bad_arguments_are_typed_errors(planted, fake, kwargs, match):
    before, after, _ = planted
    with pytest.raises(InputError, match=match):
        change(before, after, fake, **kwargs)


def test_empty_file_is_a_typed_error_naming_it(planted, fake, tmp_path):
    before, _, _ = planted
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(SkylensError, match="empty.tif"):
        change(before, empty, fake, tile=32)


def test_html_report_shows_both_dates_mask_regions_and_agrees_with_warnings(planted, fake):
    before, after, _ = planted
    res = change(before, after, fake, tile=32)
    page = res.to_html()
    assert page.count("data:image/png;base64,") >= 5  # before, after, mask, slider pair
    assert "type=range" in page and "before &rarr; after" in page
    assert "http://" not in page and "https://" not in page
    assert "2 regions" not in page or len(res.regions) == 2
    head = page.split("<p class=caption>")[1].split("</p>")[0]
    assert head.startswith(f"{len(res.regions)} region")


@pytest.mark.data
def test_levir_pair_finds_buildings(shared_data):
    from PIL import Image

    root = shared_data / "change_pairs" / "levir_cd"
    name = "test_2_0000_0000.png"
    truth = np.asarray(Image.open(root / "label" / name).convert("L")) > 0
    res = change(root / "A" / name, root / "B" / name, "default", tile=32)
    assert res.changed and iou(res.mask, truth) > 0.2
    # this pair (a whole neighbourhood built) passes the whole-scene rule; the headline says so
    assert res.caption.startswith("The whole scene changed alike") == res.uniform_change
