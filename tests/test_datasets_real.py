"""Loaders against the real data in ``../shared/data`` (marked ``data``; skip when it is absent)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from skylens.datasets import get_dataset, load_image
from skylens.datasets.ucm_captions import UCM_CLASS_FOLDERS

pytestmark = pytest.mark.data


def test_ucm_captions(shared_data):
    root = shared_data / "ucm_captions"
    sizes = {s: len(get_dataset("ucm_captions", root, s)) for s in ("train", "val", "test", "all")}
    assert sizes == {"train": 1680, "val": 210, "test": 210, "all": 2100}
    everything = get_dataset("ucm_captions", root, "all")
    assert all(len(s["captions"]) == 5 and s["image"].suffix == ".jpg" for s in everything)
    assert Counter(s["label"] for s in everything) == {i: 100 for i in range(21)}
    test = get_dataset("ucm_captions", root, "test")
    assert Counter(s["label"] for s in test) == {i: 10 for i in range(21)}
    assert test.classes[2] == "baseball diamond"
    assert load_image(test[0]).shape == (256, 256, 3)


def test_ucm_landuse(shared_data):
    root = shared_data / "ucm_landuse"
    everything = get_dataset("ucm_landuse", root, "all")
    assert len(everything) == 2100 and len(everything.classes) == 21
    assert everything.class_folders == list(UCM_CLASS_FOLDERS)
    assert everything.classes[-3:] == ["sparse residential", "storage tanks", "tennis court"]
    assert [len(get_dataset("ucm_landuse", root, s)) for s in ("train", "test")] == [1680, 420]
    counts = [
        len(get_dataset("ucm_landuse", root, f"captions-{s}")) for s in ("train", "val", "test")
    ]
    assert counts == [1680, 210, 210]


def test_ucm_captions_test_images_are_the_landuse_captions_test_images(shared_data):
    captions = get_dataset("ucm_captions", shared_data / "ucm_captions", "test")
    landuse = get_dataset("ucm_landuse", shared_data / "ucm_landuse", "captions-test")
    assert Counter(s["label"] for s in landuse) == {i: 10 for i in range(21)}
    by_id = {s["id"]: s for s in landuse}
    for sample in list(captions)[::30]:
        n = int(sample["id"])
        folder = UCM_CLASS_FOLDERS[(n - 1) // 100]
        twin = by_id[f"{folder}/{folder}{(n - 1) % 100:02d}"]
        assert twin["label"] == sample["label"]
        assert np.array_equal(load_image(twin), load_image(sample))


def test_rsivqa_ucm(shared_data):
    root, images = shared_data / "rsivqa_ucm", shared_data / "ucm_captions" / "images"
    with pytest.warns(UserWarning, match="skipped 294 malformed"):
        ds = get_dataset("rsivqa", root, "all", image_dir=images)
    assert len(ds) == 2100 + 2795 - 294 and ds.malformed == 294
    assert Counter(s["question_type"] for s in ds) == {
        "scene": 2659,
        "presence": 1118,
        "location": 428,
        "count": 396,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out = get_dataset(
            "rsivqa",
            root,
            "test",
            image_dir=images,
            image_splits=shared_data / "ucm_captions" / "dataset.json",
        )
        hashed = [
            get_dataset("rsivqa", root, s, image_dir=images) for s in ("train", "val", "test")
        ]
    assert len({s["image"] for s in held_out}) == 210
    assert sum(len(d) for d in hashed) == len(ds)


@pytest.mark.parametrize(
    "name, folder, sizes",
    [
        ("rsicd", "rsicd", {"train": 9828, "test": 1093}),
        ("rsitmd", "rsitmd", {"train": 4291, "test": 452}),
        ("sydney_captions", "sydney", {"train": 497, "val": 58, "test": 58}),
    ],
)
def test_captions_only_text(name, folder, sizes, shared_data):
    root = shared_data / "captions_only" / folder
    for split, n in sizes.items():
        ds = get_dataset(name, root, split, images_required=False)
        assert len(ds) == n
        assert all(s["image"] is None and len(s["captions"]) == 5 for s in ds)
    skipping = get_dataset(name, root, "test", skip_missing=True)
    assert len(skipping) == 0 and skipping.skipped == sizes["test"]


def test_sydney_precomp_and_sample_images(shared_data):
    root = shared_data / "captions_only" / "sydney"
    assert len(get_dataset("sydney", root, "test", layout="precomp", images_required=False)) == 28
    ds = get_dataset(
        "sydney", root, "all", image_dir=shared_data / "samples" / "sydney", skip_missing=True
    )
    assert [s["id"] for s in ds] == [str(i) for i in range(1, 10)] and ds.skipped == 604
    assert load_image(ds[0]).shape == (500, 500, 3)


@pytest.mark.data
def test_rsivqa_with_a_relative_root(shared_data, monkeypatch):
    """A relative --root (as users type it) must not be joined to itself."""
    import os

    from skylens.datasets import get_dataset

    monkeypatch.chdir(shared_data)
    ds = get_dataset("rsivqa", os.path.join(".", "rsivqa_ucm"), split="all", images_required=False)
    assert len(ds) > 4000
