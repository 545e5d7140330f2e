"""The page's chat panel in headless Chromium (Playwright): upload an image, talk, see citations.

The service runs under uvicorn in a background thread with the bag-of-words encoder of
``tests/data/kb/make.py`` and a knowledge base under a served root. Skips without Playwright or
``/usr/bin/chromium`` (``make browser-deps``).
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from skylens.knowledge.build import build_kb
from skylens.models.base import register_backend
from skylens.service import create_app

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000

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
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright is not importable ({e})")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    return sync_playwright


@pytest.fixture(scope="module")
def served(playwright_api, tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_page")
    paths = kb_make.write_sources(root / "src")
    build_kb([paths["harbour"].parent], root / "kb", model="kbwords")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(None, model="kbwords", roots=[root], token="", memory_mb=0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", root, paths
    server.should_exit = True
    thread.join(timeout=5)


def test_chat_panel_conversation_with_citations(playwright_api, served):
    url, root, paths = served
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/", wait_until="load")
        page.set_input_files("#chat-image", str(paths["red"]))
        page.fill("#chat-kb", str(root / "kb"))
        page.fill("#chat-text", "show me the red")
        page.click("#chat-form button[type=submit]")
        page.locator("#chat-log > li").nth(1).wait_for()
        assert "localize" in page.inner_text("#chat-log > li:nth-child(2)")
        page.fill("#chat-text", "What do storage tanks hold?")
        page.click("#chat-form button[type=submit]")
        page.locator("#chat-log > li").nth(3).wait_for()
        answer = page.inner_text("#chat-log > li:nth-child(4)")
        assert "knowledge" in answer and "crude oil" in answer and "harbour.md" in answer
        assert "Turn 2 answered by knowledge" in page.inner_text("#chat-message")
        browser.close()
    assert not errors, errors
