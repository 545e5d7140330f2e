"""imagery/: reading, rendering and tiling real raster layouts, and every kind of bad input."""

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from skylens.errors import BandError, ImageReadError, ImageTooLargeError, InputError
from skylens.imagery import file_digest, iter_image_files, parse_bands, read_chip, read_raster, tile, to_rgb


def _geotiff(path, arr, *, crs="EPSG:32618", nodata=None, transform=None, **kw):
    count, h, w = arr.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=count, dtype=arr.dtype, crs=crs,
        transform=transform or from_origin(500000, 4000000, 10, 10), nodata=nodata, **kw,
    ) as dst:
        dst.write(arr)
    return path


def test_uint16_geotiff_metadata(tmp_path):
    arr = np.arange(4 * 20 * 30, dtype=np.uint16).reshape(4, 20, 30)
    p = _geotiff(tmp_path / "s.tif", arr, nodata=0)
    with read_raster(p) as r:
        assert (r.width, r.height, r.count, r.dtype) == (30, 20, 4, "uint16")
        assert r.crs == "EPSG:32618" and r.gsd == pytest.approx(10.0)
        assert r.nodata == 0
        np.testing.assert_array_equal(r.read((5, 2, 10, 4), [4, 1]), arr[[3, 0], 2:6, 5:15].transpose(1, 2, 0))
        assert r.read(out_size=(10, 15)).shape == (10, 15, 4)


def test_geographic_gsd_in_metres(tmp_path):
    arr = np.ones((1, 10, 10), np.uint8)
    p = _geotiff(tmp_path / "g.tif", arr, crs="EPSG:4326", transform=from_origin(10.0, 0.5, 0.0001, 0.0001))
    with read_raster(p) as r:
        assert r.gsd == pytest.approx(11.13, rel=0.01)


def test_plain_png_is_not_georeferenced(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(p)
    with read_raster(p) as r:
        assert r.crs is None and r.transform is None and r.gsd is None
        chips = list(tile(r, 8, 0))
        assert all(c.footprint is None and c.bounds is None for c in chips)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.tif", b"", "0 bytes"),
        ("junk.jpg", b"\xff\xd8\xff\xe0garbage-not-a-jpeg" * 3, "junk.jpg"),
        ("notes.txt", b"hello, I am text", "notes.txt"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as exc:
        with read_raster(p) as r:
            r.read()
    assert name in str(exc.value)


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_raster(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="folder"):
        read_raster(tmp_path)


def test_truncated_tiff_fails_on_read_naming_it(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    p = _geotiff(tmp_path / "full.tif", arr, tiled=True, blockxsize=64, blockysize=64)
    data = p.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as exc:
        with read_raster(cut) as r:
            r.read()
    assert "cut.tif" in str(exc.value)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    arr = np.zeros((1, 100, 100), np.uint8)
    p = _geotiff(tmp_path / "b.tif", arr)
    with pytest.raises(ImageTooLargeError, match="SKYLENS_MAX_PIXELS"):
        read_raster(p, max_pixels=5000)
    monkeypatch.setenv("SKYLENS_MAX_PIXELS", "9999")
    with pytest.raises(ImageTooLargeError):
        read_raster(p)
    monkeypatch.setenv("SKYLENS_MAX_PIXELS", "10000")
    read_raster(p).close()


def test_parse_bands():
    assert parse_bands("4,3,2", 4, "x.tif") == [4, 3, 2]
    assert parse_bands(None, 1) == [1, 1, 1]
    assert parse_bands("2", 3) == [2, 2, 2]
    assert parse_bands(None, 4, "x.tif", ["blue", "green", "red", "alpha"]) == [3, 2, 1]
    with pytest.raises(BandError, match="band 5 is out of range.*1..4"):
        parse_bands("5,3,2", 4, "x.tif")
    with pytest.raises(BandError, match="integers"):
        parse_bands("r,g,b", 4, "x.tif")
    with pytest.raises(BandError, match="1 or 3"):
        parse_bands("1,2", 4, "x.tif")


def test_to_rgb_stretch_nan_and_grey():
    a = np.linspace(0, 4000, 100, dtype=np.float32).reshape(10, 10, 1).repeat(3, -1)
    a[0, 0] = np.nan
    rgb = to_rgb(a)
    assert rgb.dtype == np.uint8 and rgb.shape == (10, 10, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb.max() == 255
    g = to_rgb(np.full((4, 4), 7, np.uint8))
    assert g.shape == (4, 4, 3) and (g == 7).all()
    fixed = to_rgb(np.full((2, 2, 3), 1000, np.uint16), lo=[0, 0, 0], hi=[2000, 2000, 2000])
    assert (fixed == 127).all()
    with pytest.raises(InputError, match="stretch"):
        to_rgb(a, stretch="p98-p2")


def test_tiles_cover_the_edges_with_footprints(tmp_path):
    arr = np.ones((3, 100, 70), np.uint8)
    p = _geotiff(tmp_path / "t.tif", arr)
    with read_raster(p) as r:
        chips = list(tile(r, 32, 8))
    cols = sorted({c.window[0] for c in chips})
    rows = sorted({c.window[1] for c in chips})
    assert cols == [0, 24, 38] and rows == [0, 24, 48, 68]
    c = chips[0]
    assert c.bounds == (500000.0, 4000000.0 - 320, 500320.0, 4000000.0)
    ring = c.footprint["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert -75.01 < ring[0][0] < -74.99 and 36.0 < ring[0][1] < 36.2
    feat = c.to_geojson_feature({"score": 1})
    assert feat["geometry"]["type"] == "Polygon" and feat["properties"]["score"] == 1


def test_tile_arguments_are_checked(tmp_path):
    p = _geotiff(tmp_path / "t.tif", np.ones((1, 10, 10), np.uint8))
    with read_raster(p) as r:
        with pytest.raises(InputError):
            list(tile(r, 0, 0))
        with pytest.raises(InputError):
            list(tile(r, 16, 16))
        assert [c.window for c in tile(r, 64, 8)] == [(0, 0, 10, 10)]


def test_nodata_chips_are_skipped_and_uint16_stretched(tmp_path):
    arr = np.zeros((3, 64, 64), np.uint16)
    arr[:, :, 32:] = np.random.default_rng(0).integers(1000, 5000, (3, 64, 32))
    p = _geotiff(tmp_path / "n.tif", arr, nodata=0)
    with read_raster(p) as r:
        out = [read_chip(r, c) for c in tile(r, 32, 0)]
    skipped = [rgb is None for rgb, _ in out]
    assert skipped == [True, False, True, False]
    rgb, frac = out[1]
    assert frac == 1.0 and rgb.dtype == np.uint8 and rgb.max() == 255 and rgb.min() == 0


def test_alpha_mask_counts_as_invalid(tmp_path):
    arr = np.full((4, 16, 16), 200, np.uint8)
    arr[3, :, :8] = 0
    p = _geotiff(tmp_path / "a.tif", arr, photometric="RGB", alpha="YES")
    with read_raster(p) as r:
        _, frac = read_chip(r, next(tile(r, 16, 0)))
    assert frac == pytest.approx(0.5)


def test_big_scene_tiles_without_loading(tmp_path):
    """A 20,000 x 20,000 GeoTIFF (sparse, few MB on disk) tiles and reads by window."""
    import resource

    p = tmp_path / "big.tif"
    with rasterio.open(
        p, "w", driver="GTiff", width=20000, height=20000, count=3, dtype="uint8", crs="EPSG:32618",
        transform=from_origin(500000, 4000000, 0.5, 0.5), tiled=True, blockxsize=256, blockysize=256,
        compress="deflate", sparse_ok=True,
    ) as dst:
        dst.write(np.full((3, 256, 256), 90, np.uint8), window=rasterio.windows.Window(19744, 19744, 256, 256))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with read_raster(p) as r:
        chips = list(tile(r, 512, 0))
        assert len(chips) == 40 * 40
        rgb, _ = read_chip(r, chips[-1])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert rgb.shape == (512, 512, 3) and rgb[-1, -1].tolist() == [90, 90, 90]
    assert grown_mb < 300  # the whole scene would be 1.2 GB


def test_iter_image_files_and_digest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ["b.PNG", "a.jpg", "sub/c.tif", ".hidden/d.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.jpg", "b.PNG", "sub/c.tif"]
    with pytest.raises(ImageReadError):
        list(iter_image_files([tmp_path / "missing"]))
    assert file_digest(tmp_path / "a.jpg") == file_digest(tmp_path / "b.PNG")
    (tmp_path / "a.jpg").write_bytes(b"y")
    assert file_digest(tmp_path / "a.jpg") != file_digest(tmp_path / "b.PNG")


@pytest.mark.data
def test_real_geotiffs(shared_data):
    with read_raster(shared_data / "geotiff" / "rasterio" / "RGB.byte.tif") as r:
        assert r.crs == "EPSG:32618" and (r.width, r.height) == (791, 718)
        fp = next(tile(r, 256, 0)).footprint["coordinates"][0]
        assert all(-79 < x < -76 and 23 < y < 26 for x, y in fp)
        rgb, frac = read_chip(r, list(tile(r, 256, 0))[4])
        assert rgb is not None and rgb.std() > 5 and 0 < frac <= 1
    with read_raster(shared_data / "geotiff" / "rasterio" / "RGBA.uint16.tif") as r:
        assert r.count == 4 and r.dtype == "uint16"
        assert parse_bands(None, r.count, r.path, r.band_names) == [3, 2, 1]  # stored as BGRA
        rgb, frac = read_chip(r, next(tile(r, 256, 0)))
        assert rgb is not None and 0.2 < frac < 0.3  # the alpha band masks the rest
