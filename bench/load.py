"""Load test of ``skylens serve``: concurrent text searches against a large index.

Builds (once, cached under bench/work/) an index of N chips for the default model (random unit
vectors stand in for embeddings: exact search costs the same whatever they hold), starts the
service in a subprocess on 127.0.0.1 four times — as shipped (micro-batched encoding and exact
search over the vectors held in memory, one thread per model call, a batch per core), the same
with every model call on all cores (``--threads``), with one request at a time (``max_batch=1``),
and with the vectors left in LanceDB (``memory_mb=0``: one ANN search per query) — and drives
it with C concurrent clients for S seconds each, every query a different text. Reports requests/s, p50/p99
latency and errors; writes ``bench/results/load.json``.

To say where the time goes it also measures, in the same run, the parts of a request on their
own: one text query through the text tower (ONNX MiniLM, one thread) and a batch of 64, the
LanceDB search alone (4 threads, as many searches as it can for a few seconds) and the in-memory
search per query at batches of 1, 16, 32 and 64 with its recall@10 against an exact float32
search; and, for each phase, the server process's CPU time per request (all
its threads, from /proc). The load average of the machine is recorded before and after each
phase: on a shared machine other work competes.

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
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "load"

SERVER = """
import sys, uvicorn
from skylens.service import create_app
from skylens.service.batching import configure_threads
parallel = configure_threads(int(sys.argv[5]))  # as `skylens serve --threads N` does
app = create_app(
    sys.argv[1],
    max_batch=int(sys.argv[3]),
    memory_mb=float(sys.argv[4]),
    parallel_batches=parallel,
    warm_start=True,
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
PART_SECONDS = 10.0  # time spent measuring each part alone


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


async def _get(host: str, port: int, target: str, conn: list) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 GET on the connection in ``conn`` (opened on first use).

    A bare asyncio client: the load generator shares the machine with the server, and a full
    HTTP client library costs several ms of CPU per request that the server would then lack.
    """
    if not conn:
        conn.extend(await asyncio.open_connection(host, port))
    reader, writer = conn
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def drive(url: str, clients: int, seconds: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    errors: list[int] = []

    async def client(i: int, stop: float) -> None:
        conn: list = []
        n = 0
        while time.perf_counter() < stop:
            target = "/api/search?" + urlencode({"q": f"houses near a river {i} {n}", "k": 10})
            t = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(_get(host, int(port), target, conn), 30)
                if status != 200:
                    errors.append(status)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                errors.append(-1)
                if conn:
                    conn[1].close()
                conn.clear()
            lat.append(time.perf_counter() - t)
            n += 1
        if conn:
            conn[1].close()

    await _get(host, int(port), "/api/search?q=warm+up", [])
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i, t0 + seconds) for i in range(clients)))
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    lat.sort()
    return {
        "requests": len(lat),
        "requests_per_s": round(len(lat) / dt, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "errors": len(errors),
        "client_cpu_ms_per_request": round(1000 * cpu / max(len(lat), 1), 2),
    }


def run_server(
    index: Path, max_batch: int, memory_mb: float, threads: int, clients: int, seconds: float
) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(index),
            str(port),
            str(max_batch),
            str(memory_mb),
            str(threads),
        ]
    )
    try:
        import httpx

        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        # the first search loads the model and the vectors: not part of the per-request cost
        httpx.get(f"http://127.0.0.1:{port}/api/search", params={"q": "warm up"}, timeout=300)
        cpu0, t0 = process_cpu_s(proc.pid), time.perf_counter()
        result = asyncio.run(drive(f"http://127.0.0.1:{port}", clients, seconds))
        cpu, wall = process_cpu_s(proc.pid), time.perf_counter() - t0
        if cpu is not None and cpu0 is not None:  # the server's own CPU, all its threads
            result["server_cpu_ms_per_request"] = round(
                1000 * (cpu - cpu0) / max(result["requests"], 1), 2
            )
            result["server_cores_busy"] = round((cpu - cpu0) / wall, 2)
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_parts(index: Path, seconds: float = PART_SECONDS) -> dict:
    """Cost of the two parts of a text search on their own: text encoding and index search."""
    from concurrent.futures import ThreadPoolExecutor

    import skylens
    from skylens.index.store import ChipIndex
    from skylens.tasks.search import hold_vectors, search_index

    idx = ChipIndex.open(index)
    model = skylens.load(idx.model_name)
    model.encode_texts(["warm up"])
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        model.encode_texts([f"houses near a river {len(times)}"])
        times.append(time.perf_counter() - t)
    times.sort()
    # the service encodes a batch of queries in one call: the cost per query at batch 64
    texts = [f"houses near a river {i}" for i in range(64)]
    n, t = 0, time.perf_counter()
    while time.perf_counter() < t + seconds / 2:
        model.encode_texts(texts)
        n += len(texts)
    batch_encode_ms = 1000 * (time.perf_counter() - t) / n
    queries = model.encode_texts([f"aerial scene number {i}" for i in range(64)])
    idx.search(queries[0], k=10)
    done = 0
    t0 = time.perf_counter()

    def searcher(i: int) -> int:
        n = 0
        while time.perf_counter() < t0 + seconds:
            idx.search(queries[(i * 16 + n) % len(queries)], k=10)
            n += 1
        return n

    with ThreadPoolExecutor(4) as pool:
        done = sum(pool.map(searcher, range(4)))
    lancedb_per_s = round(done / (time.perf_counter() - t0), 1)
    # what a CLI call pays under EXACT_MAX_ROWS: one exact (flat) LanceDB scan, one thread
    scans, t = [], time.perf_counter()
    while time.perf_counter() < t + seconds / 2:
        s = time.perf_counter()
        idx.search(queries[len(scans) % len(queries)], k=10, exact=True)
        scans.append(time.perf_counter() - s)
    scans.sort()
    # the same queries scored in batches against the vectors held in memory (exact)
    memory = hold_vectors(idx, 2 * 1024**3)
    t = time.perf_counter()
    search_index(idx, queries[:1], model_version=None, k=10, memory=memory)
    memory_load_s = time.perf_counter() - t
    # the candidate pass is approximate (int8 or bfloat16, see skylens.index.memory): recall of
    # the exact float32 top 10 over every row, for these 64 queries
    import torch

    snap = memory._current()
    exact = torch.topk(torch.from_numpy(queries) @ snap.matrix.T, 10, dim=1).indices.numpy()
    ids = snap.meta.column("id").to_numpy(zero_copy_only=False)
    got = search_index(idx, queries, model_version=None, k=10, memory=memory)
    recall = float(
        np.mean(
            [len(set(ids[e]) & {h.id for h in g}) / 10 for e, g in zip(exact, got, strict=True)]
        )
    )
    per_query = {}
    for batch in (1, 16, 32, 64):
        n, t = 0, time.perf_counter()
        while time.perf_counter() < t + seconds / 3:
            search_index(idx, queries[:batch], model_version=None, k=10, memory=memory)
            n += batch
        per_query[str(batch)] = round(1000 * (time.perf_counter() - t) / n, 2)
    return {
        "text_query_encode_p50_ms": round(1000 * times[len(times) // 2], 2),
        "text_encode_ms_per_query_batch_64": round(batch_encode_ms, 2),
        "index_searches_per_s_4_threads": lancedb_per_s,
        "index_exact_scan_p50_ms": round(1000 * scans[len(scans) // 2], 1),
        "index_ann": idx.stats()["ann"],
        "memory_vectors_load_s": round(memory_load_s, 2),
        "memory_search_ms_per_query_by_batch": per_query,
        "memory_candidate_pass": memory.coarse_kind or "float32",
        "memory_recall_at_10_vs_exact": round(recall, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--phases",
        default="all",
        help="comma-separated phases to run (default all); "
        "micro_batched alone is the shipped service",
    )
    ap.add_argument(
        "--no-parts", action="store_true", help="skip measuring the parts of a request alone"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    index = build_index(args.rows)
    results = {}
    loads = {"start": load_average()}
    parts = None if args.no_parts else measure_parts(index)
    print("parts", parts, file=sys.stderr)
    loads["after_parts"] = load_average()
    cores = os.cpu_count() or 1
    phases = (  # name, max_batch, memory_mb, threads per model call
        ("micro_batched", 64, 2048.0, 1),  # the default service (`skylens serve`)
        ("micro_batched_all_threads", 64, 2048.0, cores),  # `--threads <cores>`: pools contend
        ("one_at_a_time", 1, 2048.0, 1),  # no batching: one encoder call and one search per query
        # batched encoder, one LanceDB search per query (under tasks.search.EXACT_MAX_ROWS an
        # exact flat scan, the same answer as in memory; the ANN above it)
        ("lancedb_only", 64, 0.0, 1),
    )
    if args.phases != "all":
        wanted = set(args.phases.split(","))
        phases = tuple(p for p in phases if p[0] in wanted)
    for name, max_batch, memory_mb, threads in phases:
        results[name] = run_server(index, max_batch, memory_mb, threads, args.clients, args.seconds)
        loads[f"after_{name}"] = load_average()
        print(name, results[name], file=sys.stderr)
    out = {
        "benchmark": "load",
        "command": "python bench/load.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": args.rows,
        "clients": args.clients,
        "seconds": args.seconds,
        "results": results,
        "parts": parts,
        "gain_requests_per_s": round(
            results["micro_batched"]["requests_per_s"]
            / max(results["one_at_a_time"]["requests_per_s"], 1e-9),
            2,
        )
        if {"micro_batched", "one_at_a_time"} <= set(results)
        else None,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": loads,
            "note": "load generator and server share the 2 cores; load_average (1, 5, 15 min) "
            "says whether other jobs ran too",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
