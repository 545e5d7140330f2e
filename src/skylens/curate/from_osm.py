"""``from-osm RASTER FEATURES``: captions of raster chips from the OpenStreetMap tags that cover them.

SkyScript (Wang et al., AAAI 2024) pairs geo-located imagery with the OpenStreetMap features
that intersect each image and writes captions from selected tags. Here: the raster is cut into
chips (:func:`skylens.imagery.tile`, each with its CRS bounds and WGS84 footprint); the features
(``.osm.pbf`` read with pyrosm, or GeoJSON/GeoPackage/Shapefile read with geopandas) are
reprojected to the raster's CRS; each chip keeps the features that intersect it. A feature's
*describing tag* is its first key in :data:`TAG_KEYS` (``landuse=residential``,
``building=yes``, ``highway=motorway``...); areas covering less than ``min_cover`` of the chip
and tags without a phrase are dropped. The caption names the tags, largest cover first, with a
count for buildings and similar point-like objects: ``A satellite image of a residential area,
a park and 12 buildings.`` (kind ``tag_caption``). The chip's pixels are rendered to RGB
(``read_chip``, scene-wide stretch) and stored as JPEG bytes, so 16-bit and multispectral
scenes export like any image.

Errors name the input: a raster without CRS, features without CRS, features that do not
overlap the raster.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

from skylens.curate.images import digest_of, encode_jpeg
from skylens.curate.pipeline import progress_bar, step_info
from skylens.curate.records import Record, make_record, text
from skylens.curate.sources import licence_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.errors import GeoError, InputError, MissingDependencyError

#: Keys whose value describes what a feature is, in order of preference (SkyScript's selection
#: favours land use/cover and visible man-made objects over names and addresses).
TAG_KEYS: tuple[str, ...] = (
    "aeroway", "railway", "waterway", "natural", "water", "landuse", "leisure", "amenity",
    "man_made", "power", "highway", "building",
)  # fmt: skip
#: key -> phrase template for its value; values like ``yes`` take the key's own noun.
KEY_NOUN: dict[str, str] = {
    "landuse": "{v} area", "leisure": "{v}", "natural": "{v}", "water": "{v}",
    "waterway": "{v}", "amenity": "{v}", "man_made": "{v}", "power": "power {v}",
    "aeroway": "airport {v}", "railway": "railway", "highway": "{v} road", "building": "building",
}  # fmt: skip
#: Values with a better phrase than the template gives.
VALUE_PHRASES: dict[str, str] = {
    "highway=motorway": "motorway", "highway=trunk": "trunk road", "highway=footway": "footpath",
    "highway=cycleway": "cycle path", "highway=path": "path", "highway=service": "service road",
    "highway=pedestrian": "pedestrian street", "highway=steps": "", "highway=crossing": "",
    "amenity=parking": "parking lot", "natural=water": "water", "natural=wood": "wood",
    "landuse=forest": "forest", "landuse=grass": "grass", "landuse=meadow": "meadow",
    "landuse=farmland": "farmland", "leisure=pitch": "sports pitch", "waterway=riverbank": "river",
    "natural=coastline": "coastline", "power=line": "power line", "aeroway=runway": "runway",
}  # fmt: skip
COUNTED_KEYS = ("building", "amenity", "man_made", "power")  # point-like: say how many
#: Phrases that take no article (mass nouns).
MASS_NOUNS = frozenset(
    {"water", "grass", "farmland", "forest", "wood", "meadow", "sand", "scrub", "wetland",
     "heath", "grassland", "bare rock", "scree", "mud", "beach", "railway", "farmyard"}
)  # fmt: skip


def tag_phrase(key: str, value: str) -> str:
    """Readable phrase of one tag (``landuse=residential`` -> ``residential area``); '' to skip."""
    kv = f"{key}={value}"
    if kv in VALUE_PHRASES:
        return VALUE_PHRASES[kv]
    v = str(value).replace("_", " ").strip()
    if not v or v in ("no", "none"):
        return ""
    if key == "building" or v == "yes":
        return KEY_NOUN.get(key, key).replace("{v}", key.replace("_", " ")).strip()
    return KEY_NOUN.get(key, "{v}").format(v=v)


def read_features(path: str | os.PathLike[str], bbox_wgs84: tuple[float, float, float, float]):
    """Features as a GeoDataFrame (any CRS it declares), clipped to ``bbox_wgs84`` for .pbf."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: features file not found")
    try:
        import geopandas as gpd
    except ImportError:
        raise MissingDependencyError(
            "from-osm needs geopandas: pip install skylens[curate]"
        ) from None
    if p.name.endswith(".osm.pbf") or p.suffix == ".pbf":
        try:
            import pyrosm
        except ImportError:
            raise MissingDependencyError(
                "reading .osm.pbf needs pyrosm: pip install pyrosm"
            ) from None
        with warnings.catch_warnings():  # "no data for this area" becomes our GeoError below
            warnings.simplefilter("ignore", UserWarning)
            osm = pyrosm.OSM(str(p), bounding_box=list(bbox_wgs84))
            gdf = osm.get_data_by_custom_criteria(
                custom_filter={k: True for k in TAG_KEYS}, filter_type="keep",
                keep_nodes=True, keep_ways=True, keep_relations=True,
            )  # fmt: skip
        return gdf if gdf is not None else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
    try:
        return gpd.read_file(p)
    except Exception as exc:  # pyogrio raises its own DataSourceError family
        raise InputError(f"{p}: cannot read features ({type(exc).__name__}: {exc})") from None


def describing_tag(row) -> tuple[str, str] | None:
    for key in TAG_KEYS:
        value = row.get(key) if hasattr(row, "get") else None
        if isinstance(value, str) and value.strip():
            return key, value.strip()
    return None


def chip_caption(tags: dict[tuple[str, str], dict], min_cover: float) -> tuple[str, list[dict]]:
    """Caption and kept tag facts of one chip from ``{(key, value): {"cover", "count"}}``."""
    by_phrase: dict[str, dict] = {}  # tags with one phrase (building=yes, =house) are one thing
    for (key, value), f in tags.items():
        phrase = tag_phrase(key, value)
        if not phrase:
            continue
        t = by_phrase.setdefault(
            phrase,
            {"key": key, "value": value, "phrase": phrase, "cover": 0.0, "count": 0, "area": False},
        )
        t["cover"] = round(min(1.0, t["cover"] + f["cover"]), 4)
        t["count"] += f["count"]
        t["area"] = t["area"] or bool(f.get("area"))
    kept = [
        {k: v for k, v in t.items() if k != "area"}
        for t in by_phrase.values()
        if not (t["area"] and t["cover"] < min_cover and t["key"] not in COUNTED_KEYS)
    ]
    kept.sort(key=lambda t: (-t["cover"], -t["count"], t["phrase"]))
    parts = []
    for t in kept[:6]:
        if t["key"] in COUNTED_KEYS and t["count"] > 1:
            parts.append(f"{t['count']} {t['phrase']}s")
        elif t["phrase"] in MASS_NOUNS:
            parts.append(t["phrase"])
        else:
            parts.append(("an " if t["phrase"][:1] in "aeiou" else "a ") + t["phrase"])
    if not parts:
        return "", kept
    from skylens.curate.facts import list_phrase

    return f"A satellite image of {list_phrase(parts)}.", kept


def _features_in_crs(features, raster_crs: str, path) -> object:
    if features.crs is None:
        raise GeoError(f"{path}: the features declare no CRS (GeoJSON must be EPSG:4326)")
    rows = [describing_tag(r) for _, r in features.iterrows()]
    features = features.assign(_tag=rows)
    features = features[features["_tag"].notna() & features.geometry.notna()]
    return features.to_crs(raster_crs)


def from_osm(
    raster: str | os.PathLike[str],
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    chip_size: int = 256,
    overlap: int = 0,
    min_cover: float = 0.05,
    overwrite: bool = False,
) -> CuratedDataset:
    """Build a curated dataset of raster chips captioned from OpenStreetMap tags.

    Args:
        raster: a georeferenced raster (GeoTIFF...).
        features: ``.osm.pbf``, GeoJSON, GeoPackage or Shapefile of OSM features.
        out: new dataset folder.
        chip_size: chip side in pixels.
        overlap: chip overlap in pixels.
        min_cover: smallest fraction (0..1) of a chip an area feature must cover to be named.

    Raises:
        GeoError: the raster has no CRS, the features none, or they do not overlap.
    """
    from shapely.geometry import box

    from skylens.imagery import read_chip, read_raster, tile

    with read_raster(raster) as r:
        if r.crs is None or r.transform is None:
            raise GeoError(
                f"{raster}: the raster has no CRS/georeferencing; from-osm needs a GeoTIFF with a CRS"
            )
        chips = list(tile(r, size=chip_size, overlap=overlap))
        feats = _overlapping_features(r, chips, raster, features, box)
        step = step_info(
            "from-osm", raster=raster, features=features, chip_size=chip_size, min_cover=min_cover
        )
        step["input_count"] = len(chips)
        sindex = feats.sindex
        with (
            DatasetWriter(out, step=step, name=Path(raster).stem, overwrite=overwrite) as w,
            progress_bar(len(chips), "from-osm") as bar,
        ):
            for chip in chips:
                rec, why = _chip_record(r, chip, feats, sindex, min_cover, raster, read_chip, box)
                if rec is None:
                    w.removed(f"{Path(raster).name}:{list(chip.window)}", why)
                else:
                    w.write([rec])
                bar.update(1)
    return open_dataset(out)


def _overlapping_features(r, chips, raster, features, box):
    """The described features in the raster's CRS; GeoError when none overlaps the raster."""
    lons = [c[0] for ch in chips if ch.footprint for c in ch.footprint["coordinates"][0]]
    lats = [c[1] for ch in chips if ch.footprint for c in ch.footprint["coordinates"][0]]
    bbox = (min(lons), min(lats), max(lons), max(lats))
    feats = _features_in_crs(read_features(features, bbox), r.crs, features)
    if feats.empty or not feats.intersects(box(*r.bounds)).any():
        raise GeoError(
            f"{features}: no OSM feature with a described tag overlaps {raster} "
            f"(raster bounds in WGS84: {tuple(round(v, 5) for v in bbox)})"
        )
    return feats


def _chip_record(
    r, chip, feats, sindex, min_cover, raster, read_chip, box
) -> tuple[Record | None, str]:
    cell = box(*chip.bounds)
    area = cell.area
    tags: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"cover": 0.0, "count": 0, "area": False}
    )
    for idx in sindex.query(cell, predicate="intersects"):
        row = feats.iloc[int(idx)]
        geom = row.geometry
        share = 0.0
        if geom.geom_type in ("Polygon", "MultiPolygon"):
            share = geom.intersection(cell).area / area
            if share <= 1e-6:  # touches the chip's edge only
                continue
        t = tags[row["_tag"]]
        t["count"] += 1
        t["cover"] = round(min(1.0, t["cover"] + share), 4)
        t["area"] = t.get("area", False) or share > 0
    caption, kept = chip_caption(dict(tags), min_cover)
    if not caption:
        return None, "no OSM feature with a described tag on the chip"
    rgb, valid = read_chip(r, chip)
    if rgb is None:
        return None, f"chip mostly nodata ({valid:.0%} valid)"
    return make_record(
        image_path=str(Path(raster).resolve()), image_window=list(chip.window),
        image_bytes=encode_jpeg(rgb), width=chip.window[2], height=chip.window[3],
        texts=[text("tag_caption", caption)], source="osm", licence=licence_of("osm"),
        geo=json.dumps(chip.footprint), digest=digest_of(raster, chip.window),
        meta={"crs": r.crs, "bounds": list(chip.bounds), "tags": kept},
    ), ""  # fmt: skip
