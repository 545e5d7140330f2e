"""Search at scale: ANN (LanceDB IVF index) vs exact search latency, ANN recall@10, append cost.

Fills a ``ChipIndex`` with N random unit vectors (default 1,000,000 x 384-d) through the public
``add`` (batches of 50,000), builds the ANN index with ``build_ann``, then for Q random unit
queries times ``ChipIndex.search`` (k=10) exactly (brute force) and with the ANN index over a grid
of ``nprobes`` x ``refine_factor``, and measures recall@10 of each ANN setting against exact.
The exact results are checked against numpy brute force. Finally it times 100 ingest-sized adds
(256 rows each, automatic compaction included) on the full table.

Random unit vectors in 384-d are the hardest case for an IVF index: every point is nearly
orthogonal to every other, so the true neighbours scatter over many cells. Real embeddings cluster
and reach the same recall with fewer probes.

Run: ``.venv/bin/python bench/bench_search.py`` (about 10 minutes on 2 cores); writes
``bench/results/search.json`` and removes ``bench/work/search`` afterwards (``--keep`` keeps it,
``--reuse`` starts from a kept one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
WORK = ROOT / "bench" / "work" / "search"
OUT = ROOT / "bench" / "results" / "search.json"
K = 10


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load(index, rows: int, dim: int, seed: int) -> tuple[np.ndarray, float]:
    """Add ``rows`` random unit vectors in batches of 50,000; returns them and the seconds taken."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((rows, dim), np.float32)
    t0 = time.perf_counter()
    for start in range(0, rows, 50_000):
        n = min(50_000, rows - start)
        v = unit_vectors(rng, n, dim)
        vectors[start : start + n] = v
        batch = [
            {
                "id": f"{start + i:09d}",
                "path": f"/archive/scene_{(start + i) // 1024:05d}.tif",
                "window": [256 * ((start + i) % 32), 256 * ((start + i) % 1024 // 32), 256, 256],
                "vector": v[i],
            }
            for i in range(n)
        ]
        index.add(batch)
        print(f"  loaded {start + n:,} rows", file=sys.stderr, flush=True)
    return vectors, time.perf_counter() - t0


def run_queries(index, queries: np.ndarray, **kw) -> tuple[list[float], list[list[int]]]:
    for q in queries[:3]:  # warm caches (index partitions, file handles)
        index.search(q, k=K, **kw)
    lat, ids = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, k=K, **kw)
        lat.append((time.perf_counter() - t) * 1000)
        ids.append([int(h.id) for h in hits])
    return lat, ids


def recall(ann: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / K for a, e in zip(ann, exact, strict=True)]))


def main() -> None:
    from skylens.index.store import ChipIndex

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384, help="embedding size (skylens-lite: 384)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--index-type", default=None, help="IVF_SQ (default), IVF_PQ, IVF_RQ")
    ap.add_argument("--partitions", type=int, default=None, help="IVF cells (default rows/4096)")
    ap.add_argument("--sub-vectors", type=int, default=None, help="IVF_PQ sub-vectors (dim/8)")
    ap.add_argument(
        "--probe-fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75, 0.85, 1.0],
        help="nprobes grid as shares of the IVF cells",
    )
    ap.add_argument("--refine", type=int, nargs="+", default=[1, 5, 10], help="refine_factor grid")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--target-p99-ms", type=float, default=50.0)
    ap.add_argument("--adds", type=int, default=100, help="256-row adds timed on the full table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep bench/work/search")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept table (same rows/dim)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import lancedb

    t_start = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    model = {"model_name": "random", "model_version": "random-v1", "embed_dim": args.dim}
    reused = args.reuse and (WORK / "skylens-index.json").is_file()
    if not reused:
        shutil.rmtree(WORK, ignore_errors=True)
    index = ChipIndex.create_or_open(WORK, **model)
    if reused and index.count() == args.rows:
        print("reusing the kept table", file=sys.stderr)
        tbl = index._table.search().select(["id", "vector"]).limit(None).to_arrow()
        order = np.argsort(np.asarray(tbl.column("id").to_pylist(), dtype=np.int64))
        flat = tbl.column("vector").combine_chunks().flatten().to_numpy()
        vectors = flat.reshape(-1, args.dim)[order]
        load_s = None
    else:
        shutil.rmtree(WORK, ignore_errors=True)
        index = ChipIndex.create_or_open(WORK, **model)
        vectors, load_s = load(index, args.rows, args.dim, args.seed)

    print("building the ANN index", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    index.build_ann(
        num_partitions=args.partitions,
        num_sub_vectors=args.sub_vectors,
        index_type=args.index_type,
        force=True,
    )
    build_s = time.perf_counter() - t0
    ann = dict(index.meta["ann"])
    index.compact(keep_versions=timedelta(0))  # no other reader here: measure the live size
    size_total = sum(f.stat().st_size for f in WORK.rglob("*") if f.is_file())
    size_ann = sum(f.stat().st_size for f in WORK.rglob("_indices/**/*") if f.is_file())

    queries = unit_vectors(np.random.default_rng(args.seed + 1), args.queries, args.dim)

    print("exact search", file=sys.stderr, flush=True)
    exact_lat, exact_ids = run_queries(index, queries, exact=True)
    truth, numpy_lat = [], []
    for q in queries:  # one query at a time, like a user
        t0 = time.perf_counter()
        sims = vectors @ q
        top = np.argpartition(-sims, K)[:K]
        truth.append(top[np.argsort(-sims[top])].tolist())
        numpy_lat.append((time.perf_counter() - t0) * 1000)
    exact_vs_numpy = recall(exact_ids, truth)

    grid = []
    cells = ann["num_partitions"]
    probes = sorted({max(1, min(cells, math.ceil(f * cells))) for f in args.probe_fractions})
    for nprobes in probes:
        for refine in args.refine:
            lat, ids = run_queries(index, queries, nprobes=nprobes, refine_factor=refine)
            row = {
                "nprobes": nprobes,
                "probe_fraction": round(nprobes / cells, 3),
                "refine_factor": refine,
                "recall_at_10": round(recall(ids, exact_ids), 4),
            }
            row |= percentiles(lat)
            grid.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    good = [
        g
        for g in grid
        if g["recall_at_10"] >= args.target_recall and g["p99_ms"] < args.target_p99_ms
    ]
    chosen = (
        min(good, key=lambda g: g["p99_ms"]) if good else max(grid, key=lambda g: g["recall_at_10"])
    )
    default_lat, default_ids = run_queries(index, queries)  # what search() does with no options

    print("timing ingest-sized adds on the full table", file=sys.stderr, flush=True)
    rng = np.random.default_rng(args.seed + 2)
    add_ms = []
    for b in range(args.adds):
        v = unit_vectors(rng, 256, args.dim)
        rows = [
            {
                "id": f"add-{b}-{i}",
                "path": f"/archive/new_{b}.tif",
                "window": [i, 0, 256, 256],
                "vector": x,
            }
            for i, x in enumerate(v)
        ]
        t = time.perf_counter()
        index.add(rows)
        add_ms.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    index.existing_ids([f"add-{args.adds - 1}-{i}" for i in range(256)])
    existing_ms = (time.perf_counter() - t) * 1000

    out = {
        "benchmark": "search",
        "command": " ".join([".venv/bin/python", "bench/bench_search.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": args.rows,
        "dim": args.dim,
        "k": K,
        "queries": args.queries,
        "data": "i.i.d. Gaussian vectors, L2-normalised (queries drawn the same way, independently)",
        "ann_index": ann,
        "load_seconds": round(load_s, 1) if load_s else None,
        "load_rows_per_second": round(args.rows / load_s) if load_s else None,
        "ann_build_seconds": round(build_s, 1),
        "bytes_on_disk": {"total": size_total, "ann_index": size_ann},
        "exact": percentiles(exact_lat) | {"recall_vs_numpy": round(exact_vs_numpy, 4)},
        "numpy_in_memory_exact": percentiles(numpy_lat),
        "ann_grid": grid,
        "ann_chosen": chosen
        | {
            "meets_target": bool(good),
            "target": {"recall_at_10": args.target_recall, "p99_ms": args.target_p99_ms},
        },
        "ann_defaults": {"nprobes": ann["nprobes"], "refine_factor": ann["refine_factor"]}
        | percentiles(default_lat)
        | {"recall_at_10": round(recall(default_ids, exact_ids), 4)},
        "add_256_rows_on_full_table": percentiles(add_ms)
        | {"max_ms": round(max(add_ms), 1), "batches": args.adds},
        "existing_ids_256_ms": round(existing_ms, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "cpu": cpu_model(),
            "load_average_1_5_15min": {
                "start": load_at_start,
                "end": [round(x, 2) for x in os.getloadavg()],
            },
            "platform": platform.platform(),
            "python": platform.python_version(),
            "lancedb": lancedb.__version__,
            "pylance": _version("pylance"),
            "numpy": np.__version__,
        },
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("exact", "ann_chosen", "ann_defaults")}, indent=1))
    if not args.keep:
        del index
        shutil.rmtree(WORK, ignore_errors=True)
        if WORK.parent.is_dir() and not any(WORK.parent.iterdir()):
            WORK.parent.rmdir()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
