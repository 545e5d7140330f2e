"""Load test of ``skylens serve``: concurrent text searches against a large index.

Builds (once, cached under bench/work/) an index of N chips for the default model (random unit
vectors stand in for embeddings: search cost does not depend on their content), starts the
service in a subprocess on 127.0.0.1 twice — with micro-batching and with one request at a time
(``max_batch=1``) — and drives it with C concurrent clients for S seconds each, every query a
different text. Reports requests/s, p50/p99 latency and errors; writes ``bench/results/load.json``.

Run: ``.venv/bin/python bench/load.py [--rows 100000 --clients 50 --seconds 60]``.
Traffic goes to loopback only, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "load"

SERVER = """
import sys, uvicorn
from skylens.service import create_app
app = create_app(sys.argv[1], max_batch=int(sys.argv[3]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def build_index(rows: int) -> Path:
    import skylens
    from skylens.index.store import ChipIndex

    directory = WORK / f"index-{rows}"
    if (directory / "skylens-index.json").is_file() and ChipIndex.open(directory).count() == rows:
        return directory
    model = skylens.load("default")
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    idx = ChipIndex.create_or_open(
        directory, model_name=model.name, model_version=model.version, embed_dim=model.embed_dim
    )
    rng = np.random.default_rng(0)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        v = rng.standard_normal((n, model.embed_dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        idx.add(
            [
                {
                    "id": f"{start + i:08x}",
                    "path": f"/archive/{(start + i) // 100}.tif",
                    "window": [0, 0, 256, 256],
                    "vector": v[i],
                }
                for i in range(n)
            ]
        )
    idx.build_ann()
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(url: str, clients: int, seconds: float) -> dict:
    import httpx

    lat: list[float] = []
    errors: list[int] = []

    async def client(c, i: int, stop: float) -> None:
        n = 0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await c.get(
                    url + "/api/search", params={"q": f"houses near a river {i} {n}", "k": 10}
                )
                if r.status_code != 200:
                    errors.append(r.status_code)
            except httpx.HTTPError:
                errors.append(-1)
            lat.append(time.perf_counter() - t)
            n += 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as c:
        await c.get(url + "/api/search", params={"q": "warm up"})
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, i, t0 + seconds) for i in range(clients)))
        dt = time.perf_counter() - t0
    lat.sort()
    return {
        "requests": len(lat),
        "requests_per_s": round(len(lat) / dt, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "errors": len(errors),
    }


def run_server(index: Path, max_batch: int, clients: int, seconds: float) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(index), str(port), str(max_batch)])
    try:
        import httpx

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        return asyncio.run(drive(f"http://127.0.0.1:{port}", clients, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    index = build_index(args.rows)
    results = {}
    for name, max_batch in (("micro_batched", 64), ("one_at_a_time", 1)):
        results[name] = run_server(index, max_batch, args.clients, args.seconds)
        print(name, results[name], file=sys.stderr)
    out = {
        "benchmark": "load",
        "command": "python bench/load.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": args.rows,
        "clients": args.clients,
        "seconds": args.seconds,
        "results": results,
        "gain_requests_per_s": round(
            results["micro_batched"]["requests_per_s"]
            / max(results["one_at_a_time"]["requests_per_s"], 1e-9),
            2,
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "load.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
