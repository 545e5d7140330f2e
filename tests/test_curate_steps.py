"""curate steps over records: export (WebDataset/Parquet/HF), from-webdataset round trip,
filter, instruct (faithful rephrasing), stats."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from skylens.curate.export import export
from skylens.curate.filter import filter_dataset
from skylens.curate.from_detections import from_detections
from skylens.curate.from_folders import from_folders
from skylens.curate.from_webdataset import from_webdataset
from skylens.curate.instruct import faithful, instruct
from skylens.curate.records import texts_of
from skylens.curate.stats import dataset_stats, stats_html
from skylens.errors import InputError
from skylens.models.base import ModelCard, TextGenerator, register_backend, unregister_backend

DATA = Path(__file__).parent / "data"

pytest.importorskip("webdataset")  # the curate extra: pip install skylens[curate]
pytest.importorskip("langdetect")


def _make(name: str, root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(f"tiny_{name}", DATA / name / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(root)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("steps")
    scene = _make("curate", base / "raw") / "scene"
    dota = _make("dota", base / "dota")
    from_folders(scene, base / "scene")
    from_detections(dota, base / "det")
    return {"scene": base / "scene", "det": base / "det"}


def test_webdataset_export_loads_with_webdataset_and_every_image_decodes(sets, tmp_path):
    wds = pytest.importorskip("webdataset")
    info = export(sets["det"], tmp_path / "wds", fmt="webdataset", shard_size=5)
    shards = sorted(str(p) for p in (tmp_path / "wds").glob("shard-*.tar"))
    assert len(shards) == -(-info["samples"] // 5) > 1
    n = 0
    for sample in wds.WebDataset(shards, shardshuffle=False):
        im = Image.open(io.BytesIO(sample["jpg"]))
        im.load()
        meta = json.loads(sample["json"])
        assert meta["id"] == sample["__key__"] and sample["txt"].decode()
        if meta["image_window"]:
            assert im.size == tuple(meta["image_window"][2:])
        n += 1
    assert n == info["samples"]
    back = from_webdataset([tmp_path / "wds"], tmp_path / "back")
    assert back.count == n
    assert {t["kind"] for r in back.records() for t in r["texts"]} >= {"caption", "qa"}


def test_parquet_and_hf_exports(sets, tmp_path):
    info = export(sets["scene"], tmp_path / "pq", fmt="parquet")
    assert info["samples"] == 12
    back = from_webdataset([tmp_path / "pq"], tmp_path / "back")
    assert back.count == 12
    datasets = pytest.importorskip("datasets")
    export(sets["scene"], tmp_path / "hf", fmt="hf")
    hf = datasets.load_from_disk(str(tmp_path / "hf" / "hf"))
    assert len(hf) == 12 and hf[0]["image"].size == (48, 48) and hf[0]["caption"]
    with pytest.raises(InputError, match="format"):
        export(sets["scene"], tmp_path / "x", fmt="zip")


def test_from_webdataset_refuses_a_broken_image(tmp_path):
    import webdataset as wds

    (tmp_path / "in").mkdir()
    with wds.TarWriter(str(tmp_path / "in" / "s.tar")) as sink:
        sink.write({"__key__": "good", "jpg": _jpeg(), "txt": "a harbour with boats"})
        sink.write({"__key__": "bad", "jpg": b"\xff\xd8 truncated", "txt": "x"})
    with pytest.raises(InputError, match="s.tar:bad"):
        from_webdataset([tmp_path / "in"], tmp_path / "out")
    ds = from_webdataset([tmp_path / "in"], tmp_path / "out", skip_bad=True)
    assert ds.count == 1 and ds.removed()[0]["id"] == "bad"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_filter_by_score_length_language_and_split(sets, tmp_path, fake_encoder):
    out = filter_dataset(sets["scene"], tmp_path / "f", keep_splits=["train"], min_words=3)
    assert {r["split"] for r in out.records()} == {"train"}
    assert out.manifest["steps"][-1]["removed"]["split 'test' not kept"] > 0
    # every caption scores below 2 (cosines <= 1): all records lose their captions and go
    gone = filter_dataset(sets["scene"], tmp_path / "g", model="fake", min_score=2.0)
    assert gone.count == 0 and gone.removed()[0]["reason"] == "no caption passed the checks"
    with pytest.raises(InputError, match="model"):
        filter_dataset(sets["scene"], tmp_path / "h", min_score=0.2)


def test_filter_language_check(tmp_path):
    from skylens.curate.filter import filter_batch
    from skylens.curate.records import make_record, text

    recs = [make_record(source="s", image_path=f"/{i}.jpg", texts=[text("caption", c)])
            for i, c in enumerate(["many buildings and green trees are around a playground",
                                   "viele Gebäude und grüne Bäume stehen um einen Spielplatz"])]  # fmt: skip
    kept, removed = filter_batch(recs, language="en")
    assert [texts_of(r)[0] for r in kept] == [
        "many buildings and green trees are around a playground"
    ]
    assert "language 'de'" in removed[0]["detail"][0]


class _LLM(TextGenerator):
    def __init__(self, reply: str) -> None:
        self.card = ModelCard(name="fakellm", version="1", image_size=0, embed_dim=0, source="test")
        self.reply = reply

    def generate(self, messages, *, max_tokens=256, temperature=0.0) -> str:
        return self.reply


def test_instruct_builds_hierarchical_conversations_from_annotations(sets, tmp_path):
    ds = instruct(sets["det"], tmp_path / "i")
    recs = list(ds.records())
    p1 = next(
        r
        for r in recs
        if r["image_window"] is None and json.loads(r["meta"])["sample_id"] == "P0001"
    )
    turns = p1["conversations"]
    assert (
        turns[0]["content"].startswith("<image>")
        and turns[1]["content"] == "An aerial image with 2 ships and 1 harbour."
    )
    detail = turns[3]["content"]
    assert (
        "It contains 2 ships and 1 harbour." in detail
        and "The harbour is in the bottom left." in detail
    )
    qa = dict(
        zip([t["content"] for t in turns[4::2]], [t["content"] for t in turns[5::2]], strict=True)
    )
    assert qa["How many ships are there?"] == "2"
    assert texts_of(p1, "instruction") == [detail]


def test_llm_rephrase_is_kept_only_when_faithful(sets, tmp_path):
    good = "There are 2 ships and 1 harbour; the harbour sits in the bottom left."
    register_backend("fakellm", "test LLM")(
        lambda rest: _LLM(good if rest == "good" else "I see 3 planes and 2 ships.")
    )
    try:
        faithful_ds = instruct(sets["det"], tmp_path / "good", llm="fakellm:good")
        bad_ds = instruct(sets["det"], tmp_path / "bad", llm="fakellm:bad")
    finally:
        unregister_backend("fakellm")

    def pick(ds):
        return next(
            r
            for r in ds.records()
            if json.loads(r["meta"]).get("sample_id") == "P0001" and not r["image_window"]
        )  # noqa: E731

    assert texts_of(pick(faithful_ds), "instruction") == [good]
    bad = pick(bad_ds)
    assert json.loads(bad["meta"])["instruct"] == "rephrase rejected"
    assert "planes" not in texts_of(bad, "instruction")[0]
    assert not faithful("the harbour has 3 cranes", "It contains 2 ships and 1 harbour.")
    assert not faithful("There are 2 airplanes.", "It contains 2 ships.")


def test_stats_counts_and_html(sets, tmp_path):
    s = dataset_stats(sets["det"])
    assert s["records"] == s["by_source"]["dota"] and s["region_records"] > 0
    assert s["by_text_kind"]["qa"] > 0 and s["vocabulary"] > 3
    page = tmp_path / "p.html"
    stats_html(sets["scene"], page, thumbnails=6)
    text_ = page.read_text()
    assert text_.count('<img src="data:image/jpeg;base64,') == 6 and "parking lot" in text_
