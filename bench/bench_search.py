"""Search latency at scale: LanceDB IVF-PQ (ANN) against exact search, and ANN recall@10.

Builds a ChipIndex of N random unit vectors (default 1,000,000 x 384-d; random vectors are the
hardest case for an ANN index), then times ``ChipIndex.search`` for Q random queries, ANN and exact,
and measures recall@10 of ANN against exact. Writes ``bench/results/search.json``.

Run: ``.venv/bin/python bench/bench_search.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "search"


def main() -> None:
    from skylens.index.store import ChipIndex

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobes", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--refine", type=int, default=10)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    idx = ChipIndex.create_or_open(WORK, model_name="random", model_version="random-v1", embed_dim=args.dim)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    batch = 50_000
    for start in range(0, args.rows, batch):
        n = min(batch, args.rows - start)
        v = rng.standard_normal((n, args.dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        rows = [
            {"id": f"{start + i:08d}", "path": f"/archive/{(start + i) // 1000}.tif", "window": [0, 0, 256, 256], "vector": v[i]}
            for i in range(n)
        ]
        idx._table.add(idx._to_arrow(rows))  # bulk load: ids are unique by construction
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx.build_ann()
    build_s = time.perf_counter() - t0
    q = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def timed(**kw):
        lat, ids = [], []
        for v in q:
            t = time.perf_counter()
            hits = idx.search(v, k=10, **kw)
            lat.append((time.perf_counter() - t) * 1000)
            ids.append([h.id for h in hits])
        return np.array(lat), ids

    idx.search(q[0], k=10)  # warm the index cache
    exact_lat, exact_ids = timed(exact=True)
    results = {"exact": {"p50_ms": round(float(np.percentile(exact_lat, 50)), 2), "p99_ms": round(float(np.percentile(exact_lat, 99)), 2)}}
    for nprobes in args.nprobes:
        lat, ids = timed(nprobes=nprobes, refine_factor=args.refine)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids, strict=True)])
        results[f"ann_nprobes{nprobes}_refine{args.refine}"] = {
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "recall_at_10": round(float(recall), 4),
        }
        print(nprobes, results[f"ann_nprobes{nprobes}_refine{args.refine}"], file=sys.stderr)
    import lancedb

    out = {
        "benchmark": "search",
        "command": "python bench/bench_search.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "rows": args.rows,
        "dim": args.dim,
        "queries": args.queries,
        "ann": idx.meta.get("ann"),
        "load_seconds": round(load_s, 1),
        "ann_build_seconds": round(build_s, 1),
        "results": results,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "lancedb": lancedb.__version__},
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "search.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(results, indent=1))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
