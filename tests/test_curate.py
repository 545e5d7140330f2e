"""curate: records, the atomic dataset writer, and the source steps on tiny generated data."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import pytest

from skylens.curate import vocabulary
from skylens.curate.from_captions import from_captions
from skylens.curate.from_detections import detection_records, from_detections
from skylens.curate.from_folders import folder_items, folder_records, from_folders
from skylens.curate.merge import merge
from skylens.curate.pipeline import arrow_batch_fn
from skylens.curate.records import FIELDS, make_record, text, texts_of, to_table
from skylens.curate.store import DatasetWriter, open_dataset
from skylens.errors import DatasetLayoutError, ImageReadError, InputError

DATA = Path(__file__).parent / "data"


def _make(name: str, root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(f"tiny_{name}", DATA / name / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(root)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _make("curate", tmp_path_factory.mktemp("curate"))


def test_from_folders_writes_templated_captions_and_a_manifest(data, tmp_path):
    ds = from_folders(data / "scene", tmp_path / "ds")
    recs = list(ds.records())
    assert ds.count == len(recs) == 12
    assert {r["label"] for r in recs} == {"forest", "beach", "parking lot"}
    forest = next(r for r in recs if r["label"] == "forest")
    captions = texts_of(forest, "caption")
    assert len(captions) == 3 and len(set(captions)) == 3
    # written descriptions, not "a photo of forest"
    assert any(d in " ".join(captions).lower() for d in vocabulary.CLASS_DESCRIPTIONS["forest"])
    assert texts_of(forest, "class_prompt") == ["a remote sensing image of forest."]
    assert all(r["digest"] and r["width"] == 48 for r in recs)
    assert {r["split"] for r in recs} == {"train", "test"}
    step = ds.manifest["steps"][0]
    assert step["command"] == "from-folders" and step["output_count"] == 12
    assert not list(tmp_path.glob(".ds.partial-*"))


def test_from_folders_reads_registered_layouts(tmp_path):
    root = _make("eurosat", tmp_path / "eurosat")
    ds = from_folders(root, tmp_path / "ds", name="eurosat")
    recs = list(ds.records())
    assert {r["source"] for r in recs} == {"eurosat"} and recs[0]["licence"].startswith("MIT")
    assert "Sentinel-2" in " ".join(texts_of(recs[0]))
    with pytest.raises(InputError, match="not a class-folder set"):
        from_folders(root, tmp_path / "x", name="ucm_captions")


def test_captions_differ_between_images_of_a_class_but_not_between_runs():
    a = vocabulary.class_captions("dense residential", "ucm_landuse", 3, key="a.jpg")
    assert a == vocabulary.class_captions("dense residential", "ucm_landuse", 3, key="a.jpg")
    others = {
        tuple(vocabulary.class_captions("dense residential", "", 3, key=f"{i}")) for i in range(10)
    }
    assert len(others) > 1
    assert (
        vocabulary.class_captions("unheard of class", n=2)[0].lower().count("unheard of class") == 1
    )


def test_bad_inputs_name_the_input(data, tmp_path):
    empty = tmp_path / "empty"
    (empty / "only_one_class").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=str(empty)):
        from_folders(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad"
    for cls in ("a", "b"):
        (bad / cls).mkdir(parents=True)
        (bad / cls / "ok.jpg").write_bytes(
            (data / "scene" / "forest" / "forest_0.jpg").read_bytes()
        )
    (bad / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        from_folders(bad, tmp_path / "out")
    # the failed step left nothing that looks like a dataset
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    ds = from_folders(bad, tmp_path / "out", skip_bad=True)
    assert ds.count == 2 and ds.removed()[0]["reason"] == "unreadable image"
    with pytest.raises(InputError, match="already exists"):
        from_folders(bad, tmp_path / "out")
    with pytest.raises(InputError, match="not a complete curated dataset"):
        open_dataset(bad)


def test_writer_interrupted_leaves_no_complete_dataset(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "ds", step={"command": "t"}) as w:
            w.write([make_record(source="s", image_path="/x.jpg")])
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_from_captions_reads_karpathy_json_and_refuses_wrong_layouts(data, tmp_path):
    ds = from_captions(data / "captions", tmp_path / "ds")
    recs = list(ds.records())
    assert len(recs) == 6
    assert sorted(r["split"] for r in recs).count("train") == 4
    assert texts_of(recs[0], "caption")[1] == "a road crosses the dense forest ."
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "dataset.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetLayoutError, match="dataset.json"):
        from_captions(wrong, tmp_path / "out")


def test_from_detections_counts_presence_location_and_regions(tmp_path):
    root = _make("dota", tmp_path / "dota")
    ds = from_detections(root, tmp_path / "ds")
    recs = list(ds.records())
    p1 = next(
        r
        for r in recs
        if r["image_window"] is None and json.loads(r["meta"])["sample_id"] == "P0001"
    )
    assert texts_of(p1, "caption")[0] == "An aerial image with 2 ships and 1 harbour."
    qa = {t["text"]: t["answer"] for t in p1["texts"] if t["kind"] == "qa"}
    assert qa["How many ships are there?"] == "2"
    assert qa["Is there a small vehicle?"] == "no"
    assert qa["Where is the harbour?"] == "in the bottom left"
    assert qa["Where are the ships?"] == "in the top left and bottom right"
    regions = [r for r in recs if r["image_window"] is not None]
    # difficult objects give no crop: P0002's only object is difficult
    assert all(json.loads(r["meta"])["sample_id"] != "P0002" for r in regions)
    assert {r["label"] for r in regions} == {"ship", "harbour"}
    coco = _make("coco_boxes", tmp_path / "coco")
    recs = list(from_detections(coco, tmp_path / "coco_ds", name="coco_boxes").records())
    img1 = next(
        r for r in recs if r["image_window"] is None and json.loads(r["meta"])["sample_id"] == "1"
    )
    assert {o["name"] for o in img1["objects"]} == {"plane", "storage-tank"}


def test_batch_functions_are_picklable_and_map_arrow_batches(data):
    import functools

    items = folder_items(data / "scene")[:3]
    fn = functools.partial(folder_records, captions_per_image=2)
    fn2 = pickle.loads(pickle.dumps(fn))
    kept, removed = fn2(items)
    assert len(kept) == 3 and not removed and set(kept[0]) == set(FIELDS)
    table = to_table(kept)
    mapped = pickle.loads(pickle.dumps(arrow_batch_fn(functools.partial(detection_records))))
    assert mapped is not None and table.num_rows == 3


def test_merge_keeps_sources_and_drops_repeated_ids(data, tmp_path):
    a = from_folders(data / "scene", tmp_path / "a")
    b = from_captions(data / "captions", tmp_path / "b")
    m = merge([tmp_path / "a", tmp_path / "b", tmp_path / "a"], tmp_path / "m")
    assert m.count == a.count + b.count
    assert m.manifest["steps"][-1]["removed"] == {"same id in an earlier input": a.count}
    with pytest.raises(InputError, match="unknown text kind"):
        text("poem", "x")


def test_from_vqa_and_merge_by_digest_put_qa_beside_captions(data, tmp_path):
    from skylens.curate.from_vqa import from_vqa

    root = tmp_path / "rsivqa"
    root.mkdir()
    (root / "q.txt").write_text(
        "1.tif:Does this picture contain trees?yes\n2.tif:How many buildings are there?3\n"
        "6.tif:Is there a road?no\nno-colon line\n"
    )
    qa = from_vqa(root, tmp_path / "qa", image_dir=data / "captions" / "images",
                  image_splits=data / "captions" / "dataset.json")  # fmt: skip
    recs = {json.loads(r["meta"])["sample_id"]: r for r in qa.records()}
    assert set(recs) == {"1", "2", "6"} and recs["6"]["split"] == "test"
    assert recs["2"]["texts"] == [text("qa", "How many buildings are there?", "3")]
    from_captions(data / "captions", tmp_path / "caps")
    m = merge([tmp_path / "caps", tmp_path / "qa"], tmp_path / "m", by_digest=True)
    assert m.count == 6 and m.manifest["steps"][-1]["joined"] == 3
    one = next(r for r in m.records() if json.loads(r["meta"])["sample_id"] == "1")
    assert [t["kind"] for t in one["texts"]] == ["caption", "caption", "qa"]
    assert json.loads(one["meta"])["also_from"] == ["rsivqa"]


def test_joining_keeps_the_most_held_out_split():
    from skylens.curate.merge import join_records

    a = make_record(
        source="ucm_captions", image_path="/1.jpg", split="train", texts=[text("caption", "x")]
    )
    b = make_record(
        source="rsivqa", image_path="/1.jpg", split="test", texts=[text("caption", "x")]
    )
    joined = join_records(a, b)
    assert joined["split"] == "test" and len(joined["texts"]) == 1
