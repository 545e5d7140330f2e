"""Benchmark loaders on seeded tiny copies written by ``tests/data/<name>/make.py``.

Every registered dataset has a tiny copy in its published layout; the contract tests run on all
of them, then each loader's own rules (splits, layouts, malformed lines, errors) are checked.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from skylens.datasets import (
    DATASETS,
    SAMPLE_KEYS,
    get_dataset,
    load_image,
    readable_class_name,
)
from skylens.datasets.base import TASKS, hash_fraction, stratified_split
from skylens.datasets.captions import group_precomp
from skylens.datasets.rsivqa import parse_rsivqa_line, rsivqa_question_type
from skylens.errors import DatasetLayoutError, ImageReadError, InputError

DATA = Path(__file__).parent / "data"


def make_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tiny_{name}", DATA / name / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``tiny(name)`` -> root of that dataset's tiny copy (made once per session, read-only use)."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = make_module(name).make(tmp_path_factory.mktemp(name))
        return made[name]

    return get


def fresh(name: str, tmp_path: Path, **kwargs) -> Path:
    """A private tiny copy that the test may modify."""
    return make_module(name).make(tmp_path / name, **kwargs)


def quiet(name: str, root: Path, split: str = "all", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_dataset(name, root, split, **kwargs)


# -- the contract, on every registered dataset -------------------------------------------------


def test_every_registered_dataset_has_a_tiny_copy():
    assert len(DATASETS) == 19
    folders = {p.parent.name for p in DATA.glob("*/make.py")}
    # rsivqa_train: a bigger copy in RSIVQA's layout, for the VQA training tests;
    # curate: inputs of the curate tests (class tree, captions, planted copies);
    # kb: documents and described images for the knowledge-base tests
    assert folders - set(DATASETS) == {"rsivqa_train", "curate", "kb"}
    assert set(DATASETS) <= folders


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_contract(name, tiny):
    ds = quiet(name, tiny(name))
    assert type(ds).task in TASKS and type(ds).citation
    assert len(ds) > 0 and len(list(ds)) == len(ds)
    ids = [s["id"] for s in ds]
    assert len(set(ids)) == len(ids), "ids are unique"
    for i, sample in enumerate(ds):
        assert set(sample) <= SAMPLE_KEYS
        assert sample == ds[i]
        for key in ("image", "image_pre", "image_post"):
            if key in sample:
                assert isinstance(sample[key], Path) and sample[key].is_file()
                pixels = load_image(sample, key)
                assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
        if ds.task == "captioning" or ds.task == "change_captioning":
            assert sample["captions"] and all(isinstance(c, str) and c for c in sample["captions"])
            assert all(c == c.strip() for c in sample["captions"])
        if ds.task == "vqa":
            assert sample["question"].endswith("?") and sample["answer"]
            assert sample["question_type"]
        if ds.task == "classification":
            assert 0 <= sample["label"] < len(ds.classes)
    if ds.task == "classification":
        assert ds.classes == [c.lower() for c in ds.classes] and all(ds.classes)
        assert {s["label"] for s in ds} == set(range(len(ds.classes)))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_splits_partition_all(name, tiny):
    cls = DATASETS[name]
    root = tiny(name)
    everything = {s["id"] for s in quiet(name, root, "all")}
    seen: set[str] = set()
    for split in cls.splits:
        if split == "all" or split.startswith("captions-"):
            continue
        ids = {s["id"] for s in quiet(name, root, split)}
        assert not ids & seen, f"{split} overlaps another split"
        seen |= ids
    assert seen == everything


def test_samples_are_copies_and_transforms_apply(tiny):
    ds = get_dataset("ucm_captions", tiny("ucm_captions"), "train")
    ds[0]["captions"].append("tampered")
    assert "tampered" not in ds[0]["captions"]
    with_pixels = get_dataset(
        "ucm_captions",
        tiny("ucm_captions"),
        "train",
        transforms=lambda s: {**s, "pixels": load_image(s)},
    )
    assert with_pixels[0]["pixels"].shape == (32, 32, 3)
    assert ds[-1]["id"] == ds[len(ds) - 1]["id"]
    with pytest.raises(IndexError):
        ds[len(ds)]


# -- registry ------------------------------------------------------------------------------------


def test_registry_names_aliases_and_errors(tiny, tmp_path):
    root = tiny("ucm_captions")
    assert type(get_dataset("UCM-Captions", root)).name == "ucm_captions"
    assert type(get_dataset("resisc45", tiny("nwpu_resisc45"))).name == "nwpu_resisc45"
    with pytest.raises(InputError, match="unknown dataset 'nope'.*ucm_captions"):
        get_dataset("nope", root)
    with pytest.raises(InputError, match="unknown split 'dev'.*train, val, test, all"):
        get_dataset("ucm_captions", root, "dev")
    with pytest.raises(DatasetLayoutError, match="root folder not found"):
        get_dataset("ucm_captions", tmp_path / "absent")


# -- captions ------------------------------------------------------------------------------------


def test_ucm_captions_splits_labels_and_stem_matching(tmp_path):
    root = fresh("ucm_captions", tmp_path, image_ext=".jpg", image_folder="images")
    counts = {s: len(get_dataset("ucm_captions", root, s)) for s in ("train", "val", "test", "all")}
    assert counts == {"train": 9, "val": 3, "test": 3, "all": 15}
    test = get_dataset("ucm_captions", root, "test")
    assert [s["id"] for s in test] == ["5", "105", "205"]
    assert [s["label"] for s in test] == [0, 1, 2]
    assert test.classes[:3] == ["agricultural", "airplane", "baseball diamond"]
    assert len(test.classes) == 21
    assert all(s["image"].suffix == ".jpg" for s in test)  # dataset.json says N.tif
    assert test[0]["captions"][0] == "There is a farmland number 5 variant 0 ."


def test_missing_image_raises_skips_or_keeps_text(tmp_path):
    root = fresh("ucm_captions", tmp_path)
    (root / "imgs" / "105.tif").unlink()
    with pytest.raises(DatasetLayoutError, match="'105.tif'.*stem '105'.*skip_missing=True"):
        get_dataset("ucm_captions", root, "test")
    skipping = get_dataset("ucm_captions", root, "test", skip_missing=True)
    assert len(skipping) == 2 and skipping.skipped == 1 and "skipped=1" in repr(skipping)
    text_only = get_dataset("ucm_captions", root, "test", images_required=False)
    assert len(text_only) == 3 and text_only.skipped == 0
    assert text_only[1]["image"] is None and text_only[1]["captions"]
    with pytest.raises(InputError, match="'105' has no 'image'"):
        load_image(text_only[1])


def test_captions_layout_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match="dataset_rsicd.json.*_caps.txt"):
        get_dataset("rsicd", empty)
    with pytest.raises(DatasetLayoutError, match="image folder not found"):
        get_dataset("sydney_captions", fresh("sydney_captions", tmp_path), image_dir=empty / "x")
    root = fresh("rsitmd", tmp_path)
    shutil.copy(root / "dataset_RSITMD.json", root / "dataset_copy.json")
    (root / "dataset_RSITMD.json").rename(root / "dataset_other.json")
    with pytest.raises(DatasetLayoutError, match="several caption JSON files.*annotation_file"):
        get_dataset("rsitmd", root)
    chosen = get_dataset("rsitmd", root, annotation_file=root / "dataset_copy.json")
    assert [s["id"] for s in chosen] == ["boat_0", "port_2"]
    (root / "dataset_copy.json").write_text('{"images": [{"filename": "x.tif"}]}')
    with pytest.raises(DatasetLayoutError, match=r"images\[0\] lacks"):
        get_dataset("rsitmd", root, annotation_file=root / "dataset_copy.json")


def test_rsicd_json_and_precomp_layouts_agree(tiny):
    root = tiny("rsicd")
    auto = get_dataset("rsicd", root, "train")
    assert auto.annotation_path.name == "dataset_rsicd.json"
    pre = get_dataset("rsicd", root, "train", layout="precomp")
    assert pre.annotation_path.name == "rsicd_precomp"
    assert [(s["id"], s["captions"]) for s in pre] == [(s["id"], s["captions"]) for s in auto]
    # The test file names each image on every caption line: grouped back to one sample.
    test = get_dataset("rsicd", root, "test", layout="precomp")
    assert [s["id"] for s in test] == ["bridge_2"] and len(test[0]["captions"]) == 5
    assert len(get_dataset("rsicd", root, "all", layout="precomp")) == 5  # no val files
    with pytest.raises(DatasetLayoutError, match="val_caps.txt: not found.*train, test"):
        get_dataset("rsicd", root, "val", layout="precomp")


def test_group_precomp_both_conventions():
    caps = [f"c{i}" for i in range(10)]
    assert group_precomp(caps, ["a", "b"]) == [("a", caps[:5]), ("b", caps[5:])]
    assert group_precomp(caps, ["a"] * 5 + ["b"] * 5) == [("a", caps[:5]), ("b", caps[5:])]
    with pytest.raises(DatasetLayoutError, match="10 caption lines do not fit 3"):
        group_precomp(caps, ["a", "b", "c"])


def test_nwpu_captions_categories_and_sentences(tiny):
    ds = get_dataset("nwpu_captions", tiny("nwpu_captions"), "test")
    assert ds.classes == ["airplane", "baseball diamond", "storage tank"]
    assert [(s["id"], s["label"]) for s in ds] == [
        ("airplane_003", 0),
        ("baseball_diamond_003", 1),
        ("storage_tank_003", 2),
    ]
    assert ds[0]["captions"] == [f"A airplane scene 3 described {k} ." for k in range(5)]


# -- scene classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, classes",
    [
        ("ucm_landuse", ["agricultural", "airplane", "baseball diamond"]),
        ("aid", ["airport", "bare land", "dense residential"]),
        ("nwpu_resisc45", ["airplane", "baseball diamond", "storage tank"]),
        ("eurosat", ["annual crop", "herbaceous vegetation", "sea lake"]),
        ("whu_rs19", ["airport", "football field", "railway station"]),
        ("rsscn7", ["grass", "river lake", "resident"]),
        ("patternnet", ["baseball field", "christmas tree farm", "oil gas field"]),
        ("siri_whu", ["agriculture", "idle land", "water"]),
    ],
)
def test_scene_classes_and_stratified_split(name, classes, tiny):
    train = get_dataset(name, tiny(name), "train")
    test = get_dataset(name, tiny(name), "test")
    assert train.classes == test.classes == classes
    assert train.class_folders == make_module(name).CLASSES
    # 5 images a class: round(5 * 0.2) = 1 test image per class.
    assert sorted(s["label"] for s in test) == [0, 1, 2]
    assert sorted(s["label"] for s in train) == [0] * 4 + [1] * 4 + [2] * 4


def test_readable_class_names():
    assert readable_class_name("DenseResidential") == "dense residential"
    assert readable_class_name("storage_tanks") == "storage tanks"
    assert readable_class_name("baseballdiamond") == "baseball diamond"
    assert readable_class_name("mobilehomepark") == "mobile home park"
    assert readable_class_name("chaparral") == "chaparral"
    assert readable_class_name("railwayStation") == "railway station"
    assert readable_class_name("aGrass", letter_prefix=True) == "grass"
    assert readable_class_name("dRiverLake", letter_prefix=True) == "river lake"
    assert readable_class_name("Sea-lake") == "sea lake"


def test_stratified_split_is_seeded_and_per_class():
    groups = {"a": [f"a{i}" for i in range(100)], "b": [f"b{i}" for i in range(10)]}
    split = stratified_split(groups, 0.2, seed=0)
    assert split == stratified_split(groups, 0.2, seed=0)
    assert sum(v == "test" for k, v in split.items() if k.startswith("a")) == 20
    assert sum(v == "test" for k, v in split.items() if k.startswith("b")) == 2
    other = stratified_split(groups, 0.2, seed=1)
    assert {k for k, v in other.items() if v == "test"} != {
        k for k, v in split.items() if v == "test"
    }
    assert stratified_split({"c": ["x", "y"]}, 0.2) in (
        {"x": "test", "y": "train"},
        {"x": "train", "y": "test"},
    )
    assert 0 <= hash_fraction("x", 0) < 1 and hash_fraction("x", 0) != hash_fraction("x", 1)


def test_scene_split_options(tiny):
    root = tiny("aid")
    assert len(get_dataset("aid", root, "test", test_fraction=0.4)) == 6
    a = {s["id"] for s in get_dataset("aid", root, "test", seed=0)}
    b = {s["id"] for s in get_dataset("aid", root, "test", seed=3)}
    assert len(a) == len(b) == 3 and a != b


def test_siri_whu_ids_unique_across_classes(tiny):
    ds = get_dataset("siri_whu", tiny("siri_whu"), "all")
    assert ds[0]["id"] == "agriculture/0001" and len({s["id"] for s in ds}) == 15


def test_scene_class_root_is_found_below_root_or_reported(tmp_path):
    nested = tmp_path / "download" / "v1"
    make_module("whu_rs19").make(nested)
    ds = get_dataset("whu_rs19", tmp_path / "download", "all")
    assert ds.class_root == nested / "WHU-RS19" and len(ds) == 15
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class folders.*<root>/<Class>"):
        get_dataset("aid", tmp_path / "empty")


def test_ucm_landuse_caption_splits_follow_ucm_captions(tiny, tmp_path):
    land = tiny("ucm_landuse")
    captions_json = tiny("ucm_captions") / "dataset.json"
    test = get_dataset("ucm_landuse", land, "captions-test", captions_json=captions_json)
    # UCM-Captions test images 5, 105, 205 are land-use images 04 of the first three classes.
    assert [s["id"] for s in test] == [
        "agricultural/agricultural04",
        "airplane/airplane04",
        "baseballdiamond/baseballdiamond04",
    ]
    sizes = [
        len(get_dataset("ucm_landuse", land, f"captions-{s}", captions_json=captions_json))
        for s in ("train", "val", "test")
    ]
    assert sizes == [9, 3, 3]
    with pytest.raises(DatasetLayoutError, match="captions_json="):
        get_dataset("ucm_landuse", land, "captions-test")
    # The sibling folder ../ucm_captions is found without captions_json.
    make_module("ucm_landuse").make(tmp_path / "ucm_landuse")
    shutil.copytree(captions_json.parent, tmp_path / "ucm_captions")
    assert len(get_dataset("ucm_landuse", tmp_path / "ucm_landuse", "captions-val")) == 3


# -- VQA -------------------------------------------------------------------------------------------


def test_rsivqa_parses_counts_and_warns_on_malformed_lines(tiny):
    mod = make_module("rsivqa")
    with pytest.warns(UserWarning, match="skipped 5 malformed lines"):
        ds = get_dataset("rsivqa", tiny("rsivqa"), "all")
    assert len(ds) == mod.N_VALID and ds.malformed == mod.N_MALFORMED
    assert ds.malformed_reasons["empty template slot in the question"] == 2
    types = {}
    for s in ds:
        types[s["question_type"]] = types.get(s["question_type"], 0) + 1
    assert types == {"scene": 26, "presence": 12, "count": 5, "location": 5}
    first = ds[0]
    assert (
        first["question"] == "What is the theme of this picture?" and first["answer"] == "farmland"
    )
    assert first["id"] == "ucm_res:1" and first["image"].name == "1.tif"


def test_rsivqa_holds_out_whole_images(tiny):
    root = tiny("rsivqa")
    images = {}
    for split in ("train", "val", "test"):
        images[split] = {s["image"] for s in quiet("rsivqa", root, split)}
    assert not images["train"] & images["test"] and not images["val"] & images["test"]
    assert not images["train"] & images["val"]
    assert len(images["train"] | images["val"] | images["test"]) == 20
    reseeded = {s["image"] for s in quiet("rsivqa", root, "test", seed=7)}
    assert reseeded != images["test"]
    fixed = quiet("rsivqa", root, "test", image_splits={"1.tif": "test", "2.tif": "train"})
    assert {s["image"].stem for s in fixed} == {"1"} and len(fixed) == 6  # 1 scene + 5 res


def test_rsivqa_images_elsewhere_and_missing(tiny, tmp_path):
    root = tiny("rsivqa")
    (tmp_path / "qa").mkdir()
    shutil.copy(root / "ucm_vqa.txt", tmp_path / "qa")
    with pytest.raises(DatasetLayoutError, match="'1.tif'"):
        get_dataset("rsivqa", tmp_path / "qa", "all")
    ds = get_dataset("rsivqa", tmp_path / "qa", "all", image_dir=root / "images")
    assert len(ds) == 20 and ds.malformed == 0
    text_only = get_dataset("rsivqa", tmp_path / "qa", "all", images_required=False)
    assert len(text_only) == 20 and text_only[0]["image"] is None


@pytest.mark.parametrize(
    "question, answer, kind",
    [
        ("Does this picture contain trees?", "yes", "presence"),
        ("Is there a road?", "no", "presence"),
        ("Are there any ships?", "yes", "presence"),
        ("How many cars in the picture?", "three", "count"),
        ("What is the location of the trees in this picture?", "center", "location"),
        ("Where is the river?", "left", "location"),
        ("what is the theme of this picture?", "farmland", "scene"),
        ("What kind of area is this?", "residential", "scene"),
        ("Is it a rural area?", "yes", "rural_urban"),
        ("Which side has more trees?", "left", "comparison"),
    ],
)
def test_rsivqa_question_type(question, answer, kind):
    assert rsivqa_question_type(question, answer) == kind


def test_parse_rsivqa_line():
    assert parse_rsivqa_line("P0003: how many small vehicles are there in this picture?15") == (
        "P0003",
        "how many small vehicles are there in this picture?",
        "15",
    )
    assert parse_rsivqa_line("1.tif:What is it?a plane? maybe") == (
        "1.tif",
        "What is it?",
        "a plane? maybe",
    )
    assert parse_rsivqa_line("1.tif:What is it") == "no '?' ending the question"
    assert parse_rsivqa_line("1.tif:How many  in the picture?zero").startswith("empty template")


@pytest.mark.parametrize("name", ["rsvqa_lr", "rsvqa_hr"])
def test_rsvqa_counts_types_and_inactive_rows(name, tiny):
    mod = make_module(name)
    root = tiny(name)
    splits = [s for s in DATASETS[name].splits if s != "all"]
    assert splits == list(mod.SPLITS)
    total = 0
    for split in splits:
        ds = get_dataset(name, root, split)
        assert len(ds) == mod.expected_count(split), split
        assert all(s["id"].startswith(f"{split}/") for s in ds)
        total += len(ds)
    assert len(get_dataset(name, root, "all")) == total
    train = get_dataset(name, root, "train")
    assert {s["question_type"] for s in train} == set(mod.TYPES)
    assert "3.tif" not in {s["image"].name for s in train}  # inactive image
    by_type = {s["question_type"]: s["answer"] for s in train}
    assert by_type["count"] == "12" and by_type.get("area", "120m2") == "120m2"


def test_rsvqa_layout_errors(tiny, tmp_path):
    with pytest.raises(DatasetLayoutError, match="LR_split_test_images.json: not found"):
        get_dataset("rsvqa_lr", tmp_path)
    root = fresh("rsvqa_lr", tmp_path)
    shutil.rmtree(root / "Images_LR")
    with pytest.raises(DatasetLayoutError, match="'5.tif'.*Images_LR"):
        get_dataset("rsvqa_lr", root, "test")
    assert len(get_dataset("rsvqa_lr", root, "test", skip_missing=True)) == 0
    (root / "LR_split_test_questions.json").write_text(json.dumps({"q": []}))
    with pytest.raises(DatasetLayoutError, match="expected \\{'questions'"):
        get_dataset("rsvqa_lr", root, "test", images_required=False)


# -- change captioning --------------------------------------------------------------------------


def test_levir_cc_pairs_flags_and_captions(tiny):
    ds = get_dataset("levir_cc", tiny("levir_cc"), "train")
    assert len(ds) == 3 and ds.classes == ["no change", "change"]
    assert [s["label"] for s in ds] == [1, 0, 1]
    assert ds[1]["captions"][0] == "the scene is the same as before"
    s = ds[0]
    assert s["image_pre"].parent.name == "A" and s["image_post"].parent.name == "B"
    assert s["image_pre"].name == s["image_post"].name == "train_000001.png"
    assert not np.array_equal(load_image(s, "image_pre"), load_image(s, "image_post"))
    assert [len(get_dataset("levir_cc", tiny("levir_cc"), x)) for x in ("val", "test")] == [1, 2]


def test_levir_cc_missing_post_image(tmp_path):
    root = fresh("levir_cc", tmp_path)
    (root / "images" / "test" / "B" / "test_000001.png").unlink()
    with pytest.raises(DatasetLayoutError, match="test/B/test_000001.png"):
        get_dataset("levir_cc", root, "test")
    ds = get_dataset("levir_cc", root, "test", skip_missing=True)
    assert len(ds) == 1 and ds.skipped == 1
    (root / "LevirCCcaptions.json").unlink()
    with pytest.raises(DatasetLayoutError, match="LevirCCcaptions.json: not found"):
        get_dataset("levir_cc", root, "test")


# -- pixels ------------------------------------------------------------------------------------------


def test_load_image_modes_and_errors(tmp_path):
    grey16 = tmp_path / "grey16.tif"
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 8).save(grey16)
    out = load_image(grey16)
    assert (
        out.shape == (48, 64, 3) and out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    )
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((8, 8, 4), 200, np.uint8)).save(rgba)
    assert load_image({"image": rgba}).shape == (8, 8, 3)
    with pytest.raises(ImageReadError, match="absent.png: file not found"):
        load_image(tmp_path / "absent.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.jpg: cannot decode"):
        load_image(bad)
