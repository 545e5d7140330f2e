"""Chat: the router's rules and similarity gate, referents, and each expert through a session.

The session runs on the bag-of-words encoder of ``tests/data/kb/make.py`` (an image-text
encoder without captioner: the caption expert must say so) and a knowledge base built from the
same tiny sources.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skylens.errors import InputError
from skylens.knowledge.build import build_kb
from skylens.models.base import register_backend
from skylens.tasks.chat import ChatSession, Router
from skylens.tasks.chat.session import target_phrase
from skylens.tasks.rag import CANNOT

pytest.importorskip("bm25s", reason="the knowledge base needs bm25s (pip install 'skylens[kb]')")
spec = importlib.util.spec_from_file_location(
    "kb_make", Path(__file__).parent / "data" / "kb" / "make.py"
)
kb_make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_make)
register_backend("kbwords", "bag-of-words test encoder (tests/data/kb/make.py)", "kbwords")(
    kb_make.WordsEncoder
)

ROUTES = [
    ("describe the image", "caption"),
    ("What do you see?", "caption"),
    ("what kind of place is this?", "scene"),
    ("classify this scene please", "scene"),
    ("is there a river?", "vqa"),
    ("how many cars are there?", "vqa"),
    ("are there more trees than buildings?", "vqa"),
    ("show me the storage tanks", "localize"),
    ("where are the ships?", "localize"),
    ("find the airplanes", "localize"),
    ("search the archive for harbours", "search"),
    ("find similar images in my index", "search"),
    ("what changed between the two images?", "change"),
    ("compare before and after", "change"),
    ("what is a harbour used for?", "knowledge"),
    ("who built the Golden Gate Bridge?", "knowledge"),
    ("what do storage tanks hold?", "knowledge"),
]


@pytest.mark.parametrize(("turn", "expert"), ROUTES)
def test_rules_route_turns_that_name_their_task(turn, expert):
    route = Router().route(turn, has_image=True, images=2)
    assert route.expert == expert and route.method in ("rule", "question kind")
    assert 0 <= route.confidence <= 1


def test_similarity_gate_routes_what_rules_miss():
    router = Router(kb_make.WordsEncoder().encode_texts)
    route = router.route("is it an industrial area or residential", has_image=True)
    assert (route.expert, route.method) == ("scene", "similarity") and 0 < route.confidence <= 1
    no_image = router.route("is it an industrial area or residential", has_image=False)
    assert no_image.expert in ("search", "knowledge")  # picture experts need a picture
    with pytest.raises(InputError, match="empty turn"):
        router.route("   ")


def test_target_phrase():
    assert target_phrase("show me the storage tanks") == "storage tanks"
    assert target_phrase("Where are the ships in this image?") == "ships"
    assert target_phrase("search the archive for red roofs") == "red roofs"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    paths = kb_make.write_sources(root / "src")
    build_kb([paths["harbour"].parent, paths["red"].parent], root / "kb", model="kbwords")
    split = np.zeros((128, 128, 3), np.uint8)
    split[:, :64, 0] = 230  # red left half
    split[:, 64:, 1] = 230  # green right half
    Image.fromarray(split).save(root / "split.png")
    Image.fromarray(split[:, ::-1].copy()).save(root / "flipped.png")
    return {"root": root, "kb": root / "kb", "image": root / "split.png", **paths}


def test_a_conversation_with_referents(world):
    chat = ChatSession([world["image"]], model="kbwords", kb=world["kb"])
    dangling = chat.ask("how many are there?")
    assert not dangling.supported and "refers to something not named before" in dangling.answer

    found = chat.ask("show me the red")
    assert found.expert == "localize" and found.supported and chat.referent == "red"
    col, row, w, h = found.evidence["boxes_px"][0]
    assert col + w / 2 < 64  # the best window is on the red half
    assert found.geometry is None  # a plain PNG has no coordinates: boxes stay in pixels
    assert 0 <= found.confidence <= 0.95

    follow = chat.ask("how many are there?")
    assert follow.expert == "vqa" and follow.resolved == "how many red are there?"
    assert not follow.supported and follow.answer.startswith(CANNOT)
    assert "candidate regions, which is not a count" in follow.answer

    where = chat.ask("where are they?")
    assert where.expert == "localize" and where.resolved == "where are red?"

    caption = chat.ask("describe the image")
    assert (
        caption.expert == "caption"
        and not caption.supported
        and "cannot describe" in caption.answer
    )
    scene = chat.ask("what kind of place is this?")
    assert (
        scene.expert == "scene"
        and 0 <= scene.confidence <= 1
        and len(scene.evidence["labels"]) == 3
    )

    know = chat.ask("What do storage tanks near a harbour hold?")
    assert know.expert == "knowledge" and know.supported and "crude oil" in know.answer
    assert know.citations and know.citations[0]["source"].endswith("harbour.md")
    for turn in ("what changed?", "search the archive for ships"):
        r = chat.ask(turn)
        assert not r.supported and r.answer.startswith(CANNOT)
    assert [t.turn for t in chat.history] == list(range(1, len(chat.history) + 1))
    for t in chat.history:
        json.dumps(t.to_dict())
        assert 0 <= t.confidence <= 1 and t.latency_ms >= 0


def test_georeferenced_localize_returns_geojson(world):
    chat = ChatSession([world["paris"]], model="kbwords")
    r = chat.ask("show me the green")
    assert r.supported and r.geometry["type"] == "FeatureCollection"
    lon, lat = r.geometry["features"][0]["geometry"]["coordinates"][0][0]
    assert abs(lon - 2.347) < 0.01 and abs(lat - 48.857) < 0.01


def test_change_between_two_images_and_no_image_turns(world):
    chat = ChatSession([world["image"], world["root"] / "flipped.png"], model="kbwords")
    r = chat.ask("what changed between the two images?")
    assert r.expert == "change" and r.evidence["caption"]
    assert r.geometry is None or r.geometry["type"] == "FeatureCollection"
    bare = ChatSession([], model="kbwords")
    r = bare.ask("describe the image")
    assert not r.supported and "no image in this conversation" in r.answer
    r = bare.ask("what is a harbour?")
    assert not r.supported and "no knowledge base" in r.answer
    with pytest.raises(InputError, match="empty turn"):
        bare.ask("  ")
