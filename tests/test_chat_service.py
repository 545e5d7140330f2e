"""``/api/chat``, ``/api/kb/search`` and ``/api/kb/ask`` through Starlette's TestClient.

The knowledge base and images come from ``tests/data/kb/make.py`` under a served root; the
service's model is the bag-of-words encoder the knowledge base was built with.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skylens.knowledge.build import build_kb
from skylens.models.base import register_backend
from skylens.service import create_app

pytest.importorskip("bm25s", reason="the knowledge base needs bm25s (pip install 'skylens[kb]')")
spec = importlib.util.spec_from_file_location(
    "kb_make", Path(__file__).parent / "data" / "kb" / "make.py"
)
kb_make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kb_make)
register_backend("kbwords", "bag-of-words test encoder (tests/data/kb/make.py)", "kbwords")(
    kb_make.WordsEncoder
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    paths = kb_make.write_sources(root / "src")
    build_kb([paths["harbour"].parent, paths["red"].parent], root / "kb", model="kbwords")
    app = create_app(None, model="kbwords", roots=[root], token="", memory_mb=0)
    with TestClient(app) as client:
        yield client, root, paths


def test_kb_search_and_ask(served):
    client, root, paths = served
    r = client.get("/api/kb/search", params={"kb": str(root / "kb"), "q": "runways long", "k": 2})
    assert r.status_code == 200 and Path(r.json()["passages"][0]["source"]).name == "airport.html"
    r = client.post(
        "/api/kb/ask", data={"kb": str(root / "kb"), "question": "What do storage tanks hold?"}
    )
    body = r.json()
    assert r.status_code == 200 and body["supported"] and body["citations"][0]["n"] == 1
    assert "crude oil" in body["answer"]
    r = client.post("/api/kb/ask", data={"kb": "/etc", "question": "what is this?"})
    assert r.status_code in (403, 400) and "outside the served roots" in r.text
    r = client.post("/api/kb/ask", data={"kb": str(root / "src"), "question": "what is this?"})
    assert r.status_code == 404 and "not a skylens knowledge base" in r.text


def test_chat_keeps_a_session_and_its_referent(served):
    client, root, paths = served
    png = paths["red"].read_bytes()
    r = client.post("/api/chat", data={"message": "show me the red", "kb": str(root / "kb")},
                    files={"image": ("roofs.png", png, "image/png")})  # fmt: skip
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["expert"] == "localize" and first["session"]
    r = client.post(
        "/api/chat", data={"message": "how many are there?", "session": first["session"]}
    )
    second = r.json()
    assert second["session"] == first["session"] and second["resolved"] == "how many red are there?"
    assert second["turn"] == 2 and 0 <= second["confidence"] <= 1
    r = client.post(
        "/api/chat", data={"message": "What do storage tanks hold?", "session": first["session"]}
    )
    assert r.json()["expert"] == "knowledge" and r.json()["citations"]
    r = client.post("/api/chat", data={"message": "hello", "session": "nope"})
    assert r.status_code == 404 and "unknown or expired" in r.text
    r = client.post("/api/chat", data={"message": "   "})
    assert r.status_code == 400 and "empty turn" in r.text
