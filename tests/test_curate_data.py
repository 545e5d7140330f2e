"""curate on the real data in ../shared/data (marked ``data``; skips when it is absent)."""

from __future__ import annotations

import json

import pytest

from skylens.curate.from_captions import from_captions
from skylens.curate.from_detections import from_detections
from skylens.curate.from_folders import from_folders
from skylens.curate.records import texts_of

pytestmark = pytest.mark.data


def test_eurosat_subset_becomes_sentinel2_captions(shared_data, tmp_path):
    ds = from_folders(shared_data / "eurosat_rgb_subset", tmp_path / "e", name="eurosat")
    recs = list(ds.records())
    assert len(recs) == 1500 and {r["label"] for r in recs} == {
        "forest",
        "industrial",
        "pasture",
        "residential",
        "river",
    }
    assert sum(r["split"] == "test" for r in recs) == 300  # 20 % of each class held out
    river = next(r for r in recs if r["label"] == "river")
    assert any("river" in c.lower() for c in texts_of(river, "caption"))


def test_ucm_captions_keep_published_sentences_and_split(shared_data, tmp_path):
    ds = from_captions(shared_data / "ucm_captions", tmp_path / "u", name="ucm_captions")
    recs = list(ds.records())
    splits = [r["split"] for r in recs]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (1680, 210, 210)
    assert sum(len(texts_of(r, "caption")) for r in recs) == 10500


def test_dota_samples_count_every_object(shared_data, tmp_path):
    ds = from_detections(shared_data / "dota_samples", tmp_path / "d")
    images = [r for r in ds.records() if r["image_window"] is None]
    # 604 lines less the imagesource/gsd header of each file (the data README says 602)
    assert sum(len(r["objects"]) for r in images) == 600
    p0706 = next(r for r in images if json.loads(r["meta"])["sample_id"] == "P0706")
    qa = {t["text"]: t["answer"] for t in p0706["texts"] if t["kind"] == "qa"}
    ships = sum(o["name"] == "ship" for o in p0706["objects"])
    assert qa["How many ships are there?"] == str(ships) and ships > 100
