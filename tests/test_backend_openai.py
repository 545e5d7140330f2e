"""The ``openai:`` backend against a real OpenAI-compatible server process on loopback.

``tests/servers/openai_server.py`` runs as a subprocess on a free port; its replies echo what the
client sent (last user text, image sizes decoded from the data URLs, max_tokens), and its
``/control`` switches make it fail, stall or answer malformed JSON on demand.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import skylens
from skylens.errors import CapabilityError, InputError, ModelError
from skylens.models.base import Answerer, Captioner, TextGenerator
from skylens.models.messages import image_message
from skylens.models.openai_compat import OpenAICompatModel
from skylens.tasks.ask import ask_image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

SERVER = Path(__file__).parent / "servers" / "openai_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_until_up(proc: subprocess.Popen, url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"test server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(url + "/control", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"test server at {url} did not come up in {seconds} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server() -> str:
    """Root URL of a running test server (one per module)."""
    port = free_port()
    proc = start_server(port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url)
        yield url
    finally:
        stop(proc)


@pytest.fixture
def control(server):
    """Set the server's failure switches for one test; they are reset afterwards."""

    def set_(**switches) -> dict:
        """Set switches; with none, return the counters (requests seen, failures sent)."""
        if not switches:
            return httpx.get(server + "/control").json()
        return httpx.post(server + "/control", json=switches).json()

    httpx.post(server + "/control", json={})
    yield set_
    httpx.post(server + "/control", json={})


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    for var in ("SKYLENS_OPENAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SKYLENS_OPENAI_BACKOFF", "0.01")
    monkeypatch.setenv("SKYLENS_OPENAI_TIMEOUT", "20")


def load(server: str, model: str | None = "echo-vision") -> OpenAICompatModel:
    name = f"openai:{server}/v1" + (f"#{model}" if model else "")
    return skylens.load(name, cache=False)


def image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_registry_name_resolves_to_a_language_model(server):
    model = load(server)
    assert isinstance(model, TextGenerator) and isinstance(model, Captioner)
    assert isinstance(model, Answerer)
    assert model.name == f"openai:{server}/v1#echo-vision"
    assert model.model == "echo-vision"
    assert model.list_models() == ["echo-vision", "echo-text"]


def test_generate_sends_the_conversation_and_budget(server, control):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "name the river"},
    ]
    reply = load(server).generate(msgs, max_tokens=7)
    assert reply == "echo: name the river | images: 0 | max_tokens: 7"
    assert control()["requests"] == 1


def test_stream_generate_yields_deltas_that_add_up_to_the_reply(server, control):
    model = load(server)
    msgs = [{"role": "user", "content": "count the boats"}]
    deltas = list(model.stream_generate(msgs, max_tokens=9))
    assert len(deltas) == 10  # one event per word of "echo: count the boats | images: 0 | ..."
    assert "".join(deltas) == model.generate(msgs, max_tokens=9)


def test_images_travel_as_png_data_urls(server):
    model = load(server)
    caps = model.caption_images([image(40, 50), image(64, 32)], max_tokens=12)
    assert len(caps) == 2
    assert caps[0].endswith("| images: 1 [50x40] | max_tokens: 12")
    assert caps[1].endswith("| images: 1 [32x64] | max_tokens: 12")
    assert caps[0].startswith("echo: Describe this aerial or satellite image")
    streamed = "".join(model.stream_generate(image_message(image(8, 9), "what is here?")))
    assert "images: 1 [9x8]" in streamed


def test_answer_fills_the_answer_fields(server):
    ans = ask_image(load(server), image(30, 30), "  how many ships are there?  ")
    assert ans.question == "how many ships are there?" and ans.kind == "count"
    assert ans.supported and ans.text.startswith("echo: how many ships are there? Answer with")
    assert "images: 1 [30x30]" in ans.text and "openai:" in ans.reason
    with pytest.raises(InputError, match="empty question"):
        ans = load(server).answer(image(30, 30), "")


def test_empty_reply_is_an_unsupported_answer_not_a_blank_one(server, control):
    control(malformed="empty")
    ans = load(server).answer(image(12, 12), "what is the theme of this picture?")
    assert ans.kind == "scene" and not ans.supported
    assert ans.text == "cannot answer with this model" and "empty reply" in ans.reason


def test_text_only_server_model_refusing_images_is_a_capability_error(server):
    model = load(server, "echo-text")
    assert model.generate([{"role": "user", "content": "hello"}]).startswith("echo: hello")
    with pytest.raises(CapabilityError, match="'echo-text' cannot take images"):
        model.caption_images([image(10, 10)])
    with pytest.raises(CapabilityError, match="does not support image input"):
        list(model.stream_generate(image_message(image(10, 10), "what is this?")))


def test_model_is_asked_of_the_server_only_when_it_serves_one(server):
    with pytest.raises(ModelError, match=r"offers 2 models \(echo-vision, echo-text\); name one"):
        load(server, None).generate([{"role": "user", "content": "hi"}])
    with pytest.raises(ModelError, match="HTTP 404.*model 'nope' not found.*/v1"):
        load(server, "nope").generate([{"role": "user", "content": "hi"}])


def test_transient_failures_are_retried_then_succeed(server, control, caplog):
    control(fail_next=2, fail_status=503)
    with caplog.at_level(logging.WARNING, logger="skylens.models.openai_compat"):
        reply = load(server).generate([{"role": "user", "content": "still there?"}])
    assert reply.startswith("echo: still there?")
    counters = control()
    assert counters["failed"] == 2 and counters["requests"] == 3
    assert [r.getMessage().split("; ")[1][:7] for r in caplog.records] == ["retry 1", "retry 2"]
    control(fail_next=1, fail_status=429)
    assert "".join(load(server).stream_generate([{"role": "user", "content": "again"}]))


def test_retries_exhausted_give_a_clear_error(server, control, monkeypatch):
    monkeypatch.setenv("SKYLENS_OPENAI_RETRIES", "2")
    control(fail_next=10, fail_status=503)
    url = f"{server}/v1/chat/completions"
    with pytest.raises(ModelError, match=rf"{url}: HTTP 503 after 3 tries: temporarily overloaded"):
        load(server).generate([{"role": "user", "content": "hi"}])
    assert control()["failed"] == 3


def test_client_errors_are_not_retried(server, control):
    control(api_key="sekrit")
    with pytest.raises(ModelError, match="HTTP 401: invalid api key; set SKYLENS_OPENAI_API_KEY"):
        load(server).generate([{"role": "user", "content": "hi"}])
    assert control()["requests"] == 1


def test_api_key_comes_from_the_environment(server, control, monkeypatch):
    control(api_key="sekrit")
    monkeypatch.setenv("OPENAI_API_KEY", "sekrit")
    assert load(server).generate([{"role": "user", "content": "hi"}]).startswith("echo: hi")
    monkeypatch.setenv("SKYLENS_OPENAI_API_KEY", "wrong")  # the skylens variable wins
    with pytest.raises(ModelError, match="HTTP 401"):
        load(server).generate([{"role": "user", "content": "hi"}])


def test_slow_server_times_out_with_the_url(server, control, monkeypatch):
    monkeypatch.setenv("SKYLENS_OPENAI_TIMEOUT", "0.3")
    control(delay=3.0)
    url = f"{server}/v1/chat/completions"
    with pytest.raises(ModelError, match=rf"{url}: no reply within 0.3 s"):
        load(server).generate([{"role": "user", "content": "hi"}])


def test_malformed_replies_are_named(server, control):
    url = f"{server}/v1/chat/completions"
    control(malformed="not-json")
    with pytest.raises(ModelError, match=rf"{url}: the reply is not JSON.*502 bad gateway"):
        load(server).generate([{"role": "user", "content": "hi"}])
    control(malformed="no-choices")
    with pytest.raises(ModelError, match=rf"{url}: malformed reply \(no choices"):
        load(server).generate([{"role": "user", "content": "hi"}])
    control(malformed="bad-event")
    got = []
    with pytest.raises(ModelError, match=rf"{url}: malformed stream event"):
        for delta in load(server).stream_generate([{"role": "user", "content": "a b c d"}]):
            got.append(delta)
    assert got == ["echo: ", "a "]  # what arrived before the bad event was delivered


def test_unreachable_server_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("SKYLENS_OPENAI_RETRIES", "1")
    port = free_port()  # nothing listens here
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    with pytest.raises(
        ModelError, match=rf"{url}: cannot reach the server after 2 tries \(Connect"
    ):
        skylens.load(f"openai:http://127.0.0.1:{port}/v1#m", cache=False).generate(
            [{"role": "user", "content": "hi"}]
        )


def test_server_that_starts_late_is_reached_by_retrying(monkeypatch, caplog):
    """Connection refused at first (the process is still importing), then served."""
    monkeypatch.setenv("SKYLENS_OPENAI_RETRIES", "40")
    monkeypatch.setenv("SKYLENS_OPENAI_BACKOFF", "0.05")  # 0.05, 0.1, ... capped at 8 s
    port = free_port()
    proc = start_server(port)
    try:
        with caplog.at_level(logging.WARNING, logger="skylens.models.openai_compat"):
            model = skylens.load(f"openai:http://127.0.0.1:{port}/v1#echo-text", cache=False)
            reply = model.generate([{"role": "user", "content": "are you up?"}])
    finally:
        stop(proc)
    assert reply.startswith("echo: are you up?")
    assert caplog.records and "ConnectError" in caplog.records[0].getMessage()


def test_bad_names_are_refused():
    for bad in ("openai:localhost:11434", "openai:ftp://x/v1", "openai:"):
        with pytest.raises(ModelError, match="expected openai:BASE_URL"):
            skylens.load(bad, cache=False)
    model = skylens.load("openai:http://127.0.0.1:9/v1#m", cache=False)
    with pytest.raises(InputError, match=r"image 0: expected an HxWx3 uint8"):
        model.caption_images([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ModelError, match="max_tokens must be at least 1"):
        model.generate([{"role": "user", "content": "hi"}], max_tokens=0)


def test_environment_settings_must_be_numbers(monkeypatch):
    monkeypatch.setenv("SKYLENS_OPENAI_TIMEOUT", "soon")
    with pytest.raises(ModelError, match="SKYLENS_OPENAI_TIMEOUT='soon': expected a number"):
        skylens.load("openai:http://127.0.0.1:9/v1#m", cache=False)
