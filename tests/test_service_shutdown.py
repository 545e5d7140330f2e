"""``skylens serve`` stops on SIGTERM while a long request runs (issue 18, finding 1).

A real server in a subprocess, started through the CLI, with a deliberately slow encoder: a
localize request of ~250 batches (about 50 s) is running when SIGTERM arrives. The server must
exit within seconds: uvicorn's graceful shutdown is bounded (``SHUTDOWN_GRACE_S``) and the
cancelled request stops its worker thread at the next batch. Before, the server kept computing
until the request finished.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
import conftest
from skylens.models.base import register_backend

class Slow(conftest.FakeEncoder):
    def encode_images(self, images):
        time.sleep(0.2)  # a slow model: each batch takes a while
        return super().encode_images(images)

register_backend("slowfake", "slow fake encoder", "slowfake")(lambda rest: Slow(rest))
from skylens.cli import app
app(["serve", "--model", "slowfake", "--root", {root!r}, "--port", {port!r}])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_the_server_while_a_long_request_runs(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(1, 255, (1024, 1024, 3), np.uint8)).save(tmp_path / "big.png")
    port = _free_port()
    code = SERVER.format(tests=str(Path(__file__).parent), root=str(tmp_path), port=str(port))
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not start")
        params = {"path": "big.png", "phrase": "red", "tile": 16, "stride": 8}

        def long_request():
            try:
                httpx.get(f"{base}/api/localize", params=params, timeout=120)
            except httpx.TransportError:
                pass  # the server went away: expected

        threading.Thread(target=long_request, daemon=True).start()
        time.sleep(1.0)  # the request is computing
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server was still running 20 s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
