"""skylens.imagery on tiny rasters written in tmp_path: reading, errors, rendering, tiling, files."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from skylens.errors import BandError, ImageReadError, ImageTooLargeError, InputError
from skylens.imagery import (
    DEFAULT_MAX_PIXELS,
    Chip,
    file_digest,
    iter_image_files,
    parse_bands,
    read_chip,
    read_raster,
    tile,
    to_rgb,
    window_geometry,
)

UTM18 = "EPSG:32618"
UTM_ORIGIN = from_origin(500_000, 4_000_000, 10, 10)  # 10 m pixels, top-left at lon -75


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM18,
    transform=UTM_ORIGIN,
    nodata: float | None = None,
    **profile,
) -> Path:
    """Write an HxWxC (or HxW) array as a GeoTIFF."""
    arr = data if data.ndim == 3 else data[..., None]
    kwargs = {"crs": crs, "transform": transform} if crs else {}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[1],
        height=arr.shape[0],
        count=arr.shape[2],
        dtype=arr.dtype,
        nodata=nodata,
        **kwargs,
        **profile,
    ) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def rgb8(rng) -> np.ndarray:
    return rng.integers(1, 255, (40, 60, 3), dtype=np.uint8)


@pytest.fixture
def u16_tif(tmp_path, rng) -> tuple[Path, np.ndarray]:
    """3-band uint16 GeoTIFF, EPSG:32618, 10 m, nodata 0 in its top-left 10 x 10 corner."""
    data = rng.integers(1000, 5000, (50, 70, 3), dtype=np.uint16)
    data[:10, :10] = 0
    return write_tif(tmp_path / "scene.tif", data, nodata=0), data


# -- read_raster: metadata --------------------------------------------------------------------


def test_geotiff_metadata_without_reading_pixels(u16_tif):
    path, _ = u16_tif
    with read_raster(path) as r:
        assert (r.width, r.height, r.count, r.dtype) == (70, 50, 3, "uint16")
        assert r.nodata == 0
        assert r.crs == UTM18
        assert r.transform == UTM_ORIGIN
        assert r.gsd == pytest.approx(10.0)
        assert r.bounds == (500_000, 4_000_000 - 500, 500_700, 4_000_000)
        assert r.driver == "GTiff"
        assert r.path == str(path)


def test_plain_jpeg_and_png_are_not_georeferenced(tmp_path, rgb8):
    smooth = np.dstack([*np.meshgrid(np.arange(60) * 4, np.arange(40) * 6), np.full((40, 60), 90)])
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "a.jpg", quality=95)
    for name in ("a.png", "a.jpg"):
        with read_raster(tmp_path / name) as r:
            assert (r.width, r.height, r.count, r.dtype) == (60, 40, 3, "uint8")
            assert r.transform is None and r.crs is None and r.gsd is None and r.bounds is None
            assert r.band_names == ["red", "green", "blue"]
            assert r.valid_mask().all()
    with read_raster(tmp_path / "a.png") as r:
        np.testing.assert_array_equal(r.read((5, 7, 20, 10)), rgb8[7:17, 5:25])
    with read_raster(tmp_path / "a.jpg") as r:
        window = r.read((5, 7, 20, 10)).astype(int)  # lossy: close, not equal
        assert window.shape == (10, 20, 3)
        assert np.abs(window - smooth[7:17, 5:25]).max() < 8


def test_read_window_bands_and_native_dtype(u16_tif):
    path, data = u16_tif
    with read_raster(path) as r:
        arr = r.read((3, 4, 20, 10), bands=[3, 1])
        assert arr.dtype == np.uint16
        np.testing.assert_array_equal(arr, data[4:14, 3:23][..., [2, 0]])
        np.testing.assert_array_equal(r.read(), data)


def test_read_out_size_decimates(u16_tif):
    path, data = u16_tif
    with read_raster(path) as r:
        small = r.read(bands=[1], out_size=(25, 35))
        assert small.shape == (25, 35, 1)
        np.testing.assert_array_equal(small[..., 0], data[1::2, 1::2, 0])  # nearest to centres
        assert r.read(out_size=(25, 35), resampling="average").shape == (25, 35, 3)
        with pytest.raises(InputError, match="resampling"):
            r.read(out_size=(5, 5), resampling="sharpest")
        with pytest.raises(InputError, match="out_size"):
            r.read(out_size=(0, 5))


def test_gsd_is_in_metres_for_geographic_and_mercator(tmp_path):
    data = np.ones((10, 10), np.uint8)
    # 0.0001 degree pixels centred near 60 N: 5.56 m east-west, 11.12 m north-south
    geo = write_tif(
        tmp_path / "geo.tif", data, crs="EPSG:4326", transform=from_origin(10, 60.0005, 1e-4, 1e-4)
    )
    assert read_raster(geo).gsd == pytest.approx((11.1195 * 0.5 + 11.1195) / 2, rel=1e-3)
    # Web Mercator 10 "metre" pixels at 60 N are 5 m on the ground
    y60 = 8_399_737.89  # EPSG:3857 northing of 60 N
    merc = write_tif(
        tmp_path / "merc.tif", data, crs="EPSG:3857", transform=from_origin(0, y60 + 50, 10, 10)
    )
    assert read_raster(merc).gsd == pytest.approx(5.0, rel=1e-3)


def test_ground_control_points_give_a_fitted_transform(tmp_path):
    from rasterio.control import GroundControlPoint as GCP

    gcps = [
        GCP(0, 0, 500_000, 4_000_000),
        GCP(0, 10, 500_100, 4_000_000),
        GCP(10, 0, 500_000, 3_999_900),
    ]
    path = tmp_path / "gcp.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", gcps=gcps, crs=UTM18
    ) as dst:
        dst.write(np.ones((1, 10, 10), np.uint8))
    with read_raster(path) as r:
        assert r.crs == UTM18 and r.gsd == pytest.approx(10.0)
        assert r.bounds == pytest.approx((500_000, 3_999_900, 500_100, 4_000_000))


def test_band_names_from_descriptions_then_colour_interpretation(tmp_path, rng):
    data = rng.integers(0, 1000, (8, 8, 4), dtype=np.uint16)
    path = write_tif(tmp_path / "named.tif", data)
    with rasterio.open(path, "r+") as ds:
        for i, name in enumerate(["Red", "Green", "Blue", "NIR"], start=1):
            ds.set_band_description(i, name)
    assert read_raster(path).band_names == ["red", "green", "blue", "nir"]
    plain = write_tif(tmp_path / "plain.tif", data)
    assert read_raster(plain).band_names == ["band1", "band2", "band3", "band4"]
    grey = write_tif(tmp_path / "grey.tif", data[..., 0])
    assert read_raster(grey).band_names == ["gray"]


def test_paletted_images_are_expanded_to_colour_bands(tmp_path):
    index = np.array([[0, 1], [2, 1]], np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    image.save(tmp_path / "pal.png", transparency=0)
    with read_raster(tmp_path / "pal.png") as r:
        assert (r.count, r.dtype, r.band_names) == (4, "uint8", ["red", "green", "blue", "alpha"])
        assert r.read(bands=[1, 2, 3])[1, 0].tolist() == [0, 0, 255]
        assert r.valid_mask().tolist() == [[False, True], [True, True]]


def test_raster_pickles_and_reopens(u16_tif):
    path, data = u16_tif
    with read_raster(path) as r:
        clone = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(clone.read((0, 0, 5, 5)), data[:5, :5])
    clone.close()


def test_closed_raster_refuses_to_read(u16_tif):
    path, _ = u16_tif
    with read_raster(path) as r:
        pass
    with pytest.raises(ImageReadError, match="closed"):
        r.read((0, 0, 2, 2))


# -- valid_mask -------------------------------------------------------------------------------


def test_valid_mask_nodata_needs_every_band(tmp_path):
    data = np.array([[[0, 0], [5, 0]], [[0, 7], [1, 1]]], np.uint8)  # HxWxC, 2 bands
    path = write_tif(tmp_path / "nd.tif", data, nodata=0)
    assert read_raster(path).valid_mask().tolist() == [[False, True], [True, True]]


def test_valid_mask_nan_float(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    data[0, 1, 1] = np.nan
    path = write_tif(tmp_path / "f.tif", data)
    mask = read_raster(path).valid_mask()
    assert mask.tolist() == [[True, False, True], [True, True, True]]
    nan_nodata = write_tif(
        tmp_path / "fn.tif", np.where(np.isnan(data), np.nan, data), nodata=np.nan
    )
    with read_raster(nan_nodata) as r:
        assert np.isnan(r.nodata)
        assert r.valid_mask().tolist() == mask.tolist()


def test_valid_mask_alpha_and_internal_mask(tmp_path, rgb8):
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 255, np.uint8)])
    rgba[:5, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with read_raster(tmp_path / "a.png") as r:
        assert r.band_names[-1] == "alpha"
        assert not r.valid_mask()[:5].any() and r.valid_mask()[5:].all()
        assert r.valid_mask((0, 3, 10, 4)).tolist() == [[False] * 10] * 2 + [[True] * 10] * 2
    with_alpha = write_tif(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    with read_raster(with_alpha) as r:
        assert r.band_names == ["red", "green", "blue", "alpha"]
        assert read_chip(r, next(tile(r, 64, 0)))[1] == pytest.approx(35 / 40)
    path = write_tif(tmp_path / "m.tif", rgb8)
    with rasterio.open(path, "r+") as ds:
        mask = np.full(rgb8.shape[:2], 255, np.uint8)
        mask[:, :7] = 0
        ds.write_mask(mask)
    valid = read_raster(path).valid_mask()
    assert not valid[:, :7].any() and valid[:, 7:].all()


# -- read_raster: errors ----------------------------------------------------------------------


def test_missing_folder_and_empty_files_name_the_path(tmp_path):
    with pytest.raises(ImageReadError, match="nope.tif: file not found"):
        read_raster(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_raster(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: file is empty"):
        read_raster(tmp_path / "empty.jpg")


def test_unsupported_and_corrupt_headers(tmp_path):
    (tmp_path / "notes.tif").write_text("this is not an image\n" * 20)
    with pytest.raises(ImageReadError, match="notes.tif: not a raster format"):
        read_raster(tmp_path / "notes.tif")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(ImageReadError, match="bad.jpg") as info:
        read_raster(tmp_path / "bad.jpg")
    assert info.value.path == str(tmp_path / "bad.jpg")


@pytest.mark.parametrize("suffix", [".tif", ".jpg", ".png"])
def test_truncated_files_raise_image_read_error_naming_the_file(tmp_path, suffix):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".tif":
        write_tif(whole, data, compress="deflate", tiled=True, blockxsize=128, blockysize=128)
    else:
        Image.fromarray(data).save(whole)
    cut = tmp_path / f"cut{suffix}"
    content = whole.read_bytes()
    cut.write_bytes(content[: len(content) * 3 // 4])
    # the header survives, so the damage may only show when the pixels are decoded
    with pytest.raises(ImageReadError, match=f"cut\\{suffix}") as info:
        with read_raster(cut) as r:
            r.read()
    assert "truncated" in str(info.value)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_header_claiming_too_many_pixels_is_refused(tmp_path):
    # a tiny sparse file whose header claims 50,000 x 50,000 pixels: a decompression bomb
    path = tmp_path / "bomb.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=50_000, height=50_000, count=1, dtype="uint8",
        tiled=True, blockxsize=512, blockysize=512, sparse_ok=True,
    ):  # fmt: skip
        pass
    assert path.stat().st_size < 1_000_000
    assert 50_000**2 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError, match="50000 x 50000") as info:
        read_raster(path)
    assert "SKYLENS_MAX_PIXELS" in str(info.value) and "max_pixels" in str(info.value)
    with read_raster(path, max_pixels=50_000**2) as r:
        assert r.width == 50_000


def test_max_pixels_from_environment(tmp_path, monkeypatch, rgb8):
    path = write_tif(tmp_path / "small.tif", rgb8)
    monkeypatch.setenv("SKYLENS_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="small.tif"):
        read_raster(path)
    assert read_raster(path, max_pixels=10_000).width == 60  # the argument wins
    monkeypatch.setenv("SKYLENS_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="SKYLENS_MAX_PIXELS"):
        read_raster(path)


def test_bad_windows_and_bands_are_typed_errors(u16_tif):
    path, _ = u16_tif
    with read_raster(path) as r:
        with pytest.raises(BandError, match=r"scene\.tif: band 4 is out of range.*1\.\.3"):
            r.read((0, 0, 4, 4), bands=[4])
        with pytest.raises(BandError, match="band 0"):
            r.stretch_stats([0])
        for window in [(60, 0, 20, 5), (-1, 0, 5, 5), (0, 0, 0, 5), (0, 45, 5, 10)]:
            with pytest.raises(InputError, match="not inside the raster"):
                r.read(window)


# -- parse_bands ------------------------------------------------------------------------------


def test_parse_bands_specs_and_defaults():
    assert parse_bands("4,3,2", 4, "x.tif") == [4, 3, 2]
    assert parse_bands(" 4, 3 ,2 ", 4, "x.tif") == [4, 3, 2]
    assert parse_bands([3, 2, 1], 3, "x.tif") == [3, 2, 1]
    assert parse_bands("2", 3, "x.tif") == [2, 2, 2]
    assert parse_bands(None, 4, "x.tif") == [1, 2, 3]
    assert parse_bands("", 3, "x.tif") == [1, 2, 3]
    assert parse_bands(None, 1, "x.tif") == [1, 1, 1]
    assert parse_bands(None, 2, "x.tif") == [1, 1, 1]


def test_parse_bands_uses_band_names():
    names = ["blue", "green", "red", "nir"]
    assert parse_bands(None, 4, "x.tif", names) == [3, 2, 1]
    assert parse_bands("nir,Red,green", 4, "x.tif", names) == [4, 3, 2]
    assert parse_bands(None, 4, "x.tif", ["band1", "band2", "band3", "band4"]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("5,3,2", r"x\.tif: band 5 is out of range; this raster has bands 1\.\.4"),
        ("0", "band 0 is out of range"),
        ("4,3", "give 1 or 3 bands"),
        ("a,b,c", r"x\.tif: band 'a'.*1\.\.4"),
    ],
)
def test_parse_bands_errors_name_file_and_range(spec, match):
    with pytest.raises(BandError, match=match):
        parse_bands(spec, 4, "x.tif")


# -- to_rgb -----------------------------------------------------------------------------------


def test_to_rgb_leaves_uint8_untouched(rgb8):
    out = to_rgb(rgb8)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, rgb8)


def test_to_rgb_stretches_16_bit_p2_p98():
    ramp = np.linspace(1000, 2000, 100 * 100).reshape(100, 100).astype(np.uint16)
    out = to_rgb(np.dstack([ramp] * 3))
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    # 2 % of pixels at or below p2 and at or above p98 saturate
    assert (out[..., 0] == 0).mean() == pytest.approx(0.02, abs=0.005)
    assert (out[..., 0] == 255).mean() == pytest.approx(0.02, abs=0.005)
    assert (np.diff(out[..., 0].ravel().astype(int)) >= 0).all()  # monotone


def test_to_rgb_explicit_limits_and_modes():
    arr = np.array([[0, 100, 600, 1100, 2000]], np.uint16)
    assert to_rgb(arr, lo=100, hi=1100)[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert to_rgb(arr, stretch="minmax")[0, :, 0].tolist() == [0, 13, 76, 140, 255]
    assert to_rgb(arr, stretch="none")[0, :, 0].tolist() == [0, 100, 255, 255, 255]
    per_band = to_rgb(np.dstack([arr] * 3), lo=[0, 100, 600], hi=[2000, 1100, 1100])
    assert per_band[0, 2].tolist() == [76, 128, 0]


def test_to_rgb_nan_and_nodata_are_black_and_ignored_by_stats():
    data = np.linspace(0.1, 0.3, 50 * 50, dtype=np.float32).reshape(50, 50)
    data[0, 0] = np.nan
    data[0, 1] = -9999.0
    out = to_rgb(data, nodata=-9999.0)
    assert out.shape == (50, 50, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [0, 0, 0]
    assert out[-1, -1].tolist() == [255, 255, 255]  # -9999 did not drag the stretch down
    valid = data[np.isfinite(data) & (data != -9999.0)]
    lo, hi = np.percentile(valid, [2, 98])
    assert out[25, 25, 0] == round((data[25, 25] - lo) / (hi - lo) * 255)


def test_to_rgb_band_selection_grey_and_constant():
    four = np.zeros((2, 2, 4), np.uint8)
    four[..., 3] = 200
    assert to_rgb(four, bands=[4, 1, 1])[0, 0].tolist() == [200, 0, 0]
    grey = to_rgb(np.full((3, 3), 77, np.uint8))
    assert grey.shape == (3, 3, 3) and (grey == 77).all()
    flat = to_rgb(np.full((4, 4, 3), 10_000, np.uint16))  # no contrast: mid grey
    assert (flat == 128).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stretch": "p98-p2"}, "0 <= LO < HI"),
        ({"stretch": "gamma"}, "unknown stretch"),
        ({"bands": [5, 1, 1]}, "1..4"),
        ({"lo": [1, 2], "hi": [3, 4]}, "1 or 3 values"),
    ],
)
def test_to_rgb_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        to_rgb(np.zeros((2, 2, 4), np.uint16), **kwargs)


def test_to_rgb_rejects_bad_shapes():
    with pytest.raises(InputError, match="two bands"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(InputError, match="HxW"):
        to_rgb(np.zeros((2, 2, 2, 2), np.uint8))


# -- tile -------------------------------------------------------------------------------------


def _raster(tmp_path: Path, width: int, height: int, **kwargs):
    return read_raster(write_tif(tmp_path / "t.tif", np.ones((height, width), np.uint8), **kwargs))


def test_tile_windows_cover_the_raster_and_stay_inside(tmp_path):
    with _raster(tmp_path, 600, 500) as r:
        chips = list(tile(r, size=256, overlap=32))
    cols = [0, 224, 344]  # stride 224; the last column shifted inward to end at 600
    rows = [0, 224, 244]
    assert [c.window for c in chips] == [(c, w, 256, 256) for w in rows for c in cols]
    covered = np.zeros((500, 600), bool)
    for chip in chips:
        col, row, w, h = chip.window
        assert col + w <= 600 and row + h <= 500
        covered[row : row + h, col : col + w] = True
    assert covered.all()


def test_tile_exact_fit_and_small_sides(tmp_path):
    with _raster(tmp_path, 512, 512) as r:
        assert [c.window[:2] for c in tile(r, 256, 0)] == [(0, 0), (256, 0), (0, 256), (256, 256)]
    with _raster(tmp_path, 100, 300) as r:
        assert [c.window for c in tile(r, 256, 32)] == [(0, 0, 100, 256), (0, 44, 100, 256)]
    with _raster(tmp_path, 30, 20) as r:
        assert [c.window for c in tile(r, 256, 32)] == [(0, 0, 30, 20)]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-8, 0), (64, 64), (64, -1), (64.5, 0)])
def test_tile_validates_size_and_overlap(tmp_path, size, overlap):
    with _raster(tmp_path, 64, 64) as r, pytest.raises(InputError):
        list(tile(r, size, overlap))


def test_chip_bounds_and_wgs84_footprint(tmp_path):
    with _raster(tmp_path, 300, 200) as r:
        chips = list(tile(r, 100, 0))
        first, last = chips[0], chips[-1]
        assert first.bounds == (500_000, 4_000_000 - 1000, 501_000, 4_000_000)
        assert last.bounds == (502_000, 4_000_000 - 2000, 503_000, 4_000_000 - 1000)
        assert first.crs == UTM18 and first.source == r.path
        ring = first.footprint["coordinates"][0]
        assert first.footprint["type"] == "Polygon"
        assert len(ring) == 5 and ring[0] == ring[-1]
        # easting 500,000 is the central meridian of zone 18 (75 W); northing 4,000,000 ~ 36.1 N
        assert ring[0][0] == pytest.approx(-75.0, abs=1e-6)
        assert ring[0][1] == pytest.approx(36.14, abs=0.01)
        lons = [p[0] for p in ring]
        lats = [p[1] for p in ring]
        assert max(lons) - min(lons) == pytest.approx(1000 / 90_000, rel=0.05)  # 1 km at 36 N
        assert max(lats) - min(lats) == pytest.approx(1000 / 111_000, rel=0.05)
        assert window_geometry(r, first.window) == (first.bounds, first.footprint)


def test_geographic_footprint_is_the_bounds(tmp_path):
    t = from_origin(10.0, 50.0, 0.01, 0.01)
    with _raster(tmp_path, 20, 10, crs="EPSG:4326", transform=t) as r:
        (chip,) = tile(r, 256)
    assert chip.bounds == pytest.approx((10.0, 49.9, 10.2, 50.0))
    assert chip.footprint["coordinates"][0] == [
        [10.0, 50.0], [10.2, 50.0], [10.2, 49.9], [10.0, 49.9], [10.0, 50.0],
    ]  # fmt: skip


def test_chips_of_plain_images_have_no_geometry(tmp_path, rgb8):
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    with read_raster(tmp_path / "a.png") as r:
        (chip,) = tile(r, 64)
    assert chip.bounds is None and chip.crs is None and chip.footprint is None
    feature = chip.to_geojson_feature({"score": 0.5})
    assert feature["geometry"] is None
    assert feature["properties"]["score"] == 0.5
    json.dumps(feature)


def test_chip_geojson_feature(tmp_path):
    with _raster(tmp_path, 64, 64) as r:
        (chip,) = tile(r, 64)
    feature = chip.to_geojson_feature({"score": 0.9, "crs": "overridden"})
    assert feature["type"] == "Feature"
    assert feature["geometry"] == chip.footprint
    assert feature["properties"]["window"] == [0, 0, 64, 64]
    assert feature["properties"]["bounds"] == list(chip.bounds)
    assert feature["properties"]["crs"] == "overridden"
    assert json.loads(json.dumps(feature)) == feature
    with pytest.raises(AttributeError):
        chip.window = (1, 1, 1, 1)  # frozen


def _count_pixel_reads(raster, monkeypatch) -> list:
    """Record every window the raster's dataset decodes."""
    ds = raster.dataset
    calls: list = []
    real_read, real_mask = ds.read, ds.dataset_mask

    def read(*args, **kwargs):
        calls.append(kwargs.get("window"))
        return real_read(*args, **kwargs)

    def dataset_mask(*args, **kwargs):
        calls.append(kwargs.get("window"))
        return real_mask(*args, **kwargs)

    monkeypatch.setattr(ds, "read", read)
    monkeypatch.setattr(ds, "dataset_mask", dataset_mask)
    return calls


def test_a_20000_px_scene_tiles_and_renders_without_being_loaded(tmp_path, monkeypatch):
    """20,000 x 20,000 x 3 uint16 is 2.4 GB decoded; the sparse file on disk is a few kB."""
    path = tmp_path / "big.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=20_000, height=20_000, count=3, dtype="uint16",
        crs=UTM18, transform=from_origin(500_000, 4_000_000, 0.5, 0.5), nodata=0,
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
    ) as dst:  # fmt: skip
        block = np.tile(np.arange(512, dtype=np.uint16) + 1000, (3, 512, 1))
        dst.write(block, window=((0, 512), (0, 512)))  # one block of data, the rest sparse
    assert path.stat().st_size < 200_000
    with read_raster(path) as r:
        calls = _count_pixel_reads(r, monkeypatch)
        chips = list(tile(r, 256, 32))
        assert len(chips) == 90 * 90
        assert calls == []  # pure geometry
        assert chips[-1].window == (19_744, 19_744, 256, 256)

        lo, hi = r.stretch_stats([1, 2, 3])
        # the only data is the first block, seen through a 128 px sample window (1000..1127)
        assert lo == pytest.approx([1000 + 0.02 * 127] * 3, abs=1)
        assert hi == pytest.approx([1000 + 0.98 * 127] * 3, abs=1)
        n_stats_reads = len(calls)
        assert n_stats_reads <= 2 * 8 * 8  # a grid of block windows (data + mask), not 1,600 blocks

        rgb, valid = read_chip(r, chips[0])
        assert valid == 1.0 and rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
        empty, valid = read_chip(r, chips[-1])  # sparse blocks read as nodata
        assert empty is None and valid == 0.0
        assert all(w is not None for w in calls[n_stats_reads:])  # chips read by window only


# -- read_chip --------------------------------------------------------------------------------


def test_read_chip_uint8_is_the_source_pixels(tmp_path, rgb8):
    with read_raster(write_tif(tmp_path / "a.tif", rgb8)) as r:
        chip = list(tile(r, 32, 0))[1]
        rgb, valid = read_chip(r, chip)
        col, row, w, h = chip.window
        np.testing.assert_array_equal(rgb, rgb8[row : row + h, col : col + w])
        assert valid == 1.0
        bgr, _ = read_chip(r, chip, bands="3,2,1")
        np.testing.assert_array_equal(bgr, rgb[..., ::-1])


def test_read_chip_skips_all_nodata_and_blacks_out_partial_nodata(u16_tif):
    path, _ = u16_tif
    with read_raster(path) as r:
        corner = Chip(r.path, (0, 0, 10, 10), None, None, None)
        assert read_chip(r, corner) == (None, 0.0)
        rgb, valid = read_chip(r, corner, min_valid=0.0)
        assert valid == 0.0 and rgb.shape == (10, 10, 3) and not rgb.any()
        half = Chip(r.path, (0, 0, 20, 10), None, None, None)
        rgb, valid = read_chip(r, half)
        assert valid == pytest.approx(0.5)
        assert not rgb[:, :10].any() and rgb[:, 10:].any()
        assert read_chip(r, half, min_valid=0.6) == (None, pytest.approx(0.5))


def test_chips_of_a_scene_share_one_stretch(tmp_path):
    # left half dark, right half bright: per-chip stretching would make both look alike
    data = np.zeros((64, 128, 3), np.uint16)
    data[:, :64] = np.linspace(1000, 2000, 64, dtype=np.uint16)[None, :, None]
    data[:, 64:] = np.linspace(3000, 4000, 64, dtype=np.uint16)[None, :, None]
    with read_raster(write_tif(tmp_path / "two.tif", data)) as r:
        left, right = (read_chip(r, c)[0] for c in tile(r, 64, 0))
        lo, hi = r.stretch_stats([1, 2, 3])
    assert left.mean() < 80 < 175 < right.mean()
    expected = to_rgb(data[:, :64], lo=lo, hi=hi)
    np.testing.assert_array_equal(left, expected)


def test_read_chip_rejects_bad_bands_and_stretch(u16_tif):
    path, _ = u16_tif
    with read_raster(path) as r:
        (chip,) = tile(r, 256)
        with pytest.raises(BandError, match=r"scene\.tif.*1\.\.3"):
            read_chip(r, chip, bands="4,3,2")
        with pytest.raises(InputError, match="stretch"):
            read_chip(r, chip, stretch="log")


# -- files ------------------------------------------------------------------------------------


def test_file_digest_is_of_content(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"pixels" * 1000)
    (tmp_path / "b.jpg").write_bytes(b"pixels" * 1000)
    (tmp_path / "c.tif").write_bytes(b"pixelz" * 1000)
    digest = file_digest(tmp_path / "a.tif")
    assert digest == hashlib.blake2b(b"pixels" * 1000, digest_size=16).hexdigest()
    assert len(digest) == 32
    assert file_digest(tmp_path / "b.jpg") == digest
    assert file_digest(tmp_path / "c.tif") != digest
    with pytest.raises(ImageReadError, match="missing.tif"):
        file_digest(tmp_path / "missing.tif")


def test_file_digest_streams_large_files(tmp_path):
    content = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # 3 MiB + change
    (tmp_path / "big.tif").write_bytes(content)
    expected = hashlib.blake2b(content, digest_size=16).hexdigest()
    assert file_digest(tmp_path / "big.tif") == expected


def test_iter_image_files_expands_folders(tmp_path):
    for name in [
        "b.TIF", "a.jpg", "sub/c.PNG", "sub/deep/d.jp2", "notes.txt", "a.tif.aux.xml",
        ".hidden.jpg", ".cache/e.jpg", "x.WebP", "y.bmp", "z.jpeg",
    ]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.tif").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == sorted(
        ["a.jpg", "b.TIF", "sub/c.PNG", "sub/deep/d.jp2", "x.WebP", "y.bmp", "z.jpeg"]
    )
    shallow = [p.name for p in iter_image_files([tmp_path], recursive=False)]
    assert shallow == ["a.jpg", "b.TIF", "x.WebP", "y.bmp", "z.jpeg"]


def test_iter_image_files_explicit_files_and_errors(tmp_path):
    (tmp_path / "scene.dat").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    found = list(iter_image_files([tmp_path / "scene.dat", tmp_path, str(tmp_path / "a.jpg")]))
    assert found == [tmp_path / "scene.dat", tmp_path / "a.jpg"]  # each once, in order given
    with pytest.raises(ImageReadError, match="nowhere: file or folder not found"):
        list(iter_image_files([tmp_path / "nowhere"]))
