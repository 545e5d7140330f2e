"""Search at scale, side by side: exact numpy vs FAISS (HNSW, IVF-PQ) vs LanceDB (IVF_SQ, IVF_PQ,
IVF_HNSW_SQ), on vectors with the structure of real embeddings (``bench/scale_vectors.py``).

For each table size (default 100k, 300k, 1M rows) and each method: build time, bytes per row in
memory (process RSS growth while building) and on disk (serialised index / Lance folder),
recall@10 against exact float32 search, and latency p50/p99 of one query at a time and per query
in batches of 32, over a grid of search-effort settings. Then a projection to 10M and 100M rows
from the measured slope (log-log fit of latency and build time over the sizes measured).

Methods:
* ``numpy``: exact, ``q @ X.T`` + ``argpartition`` over float32 rows (the ground truth).
* ``faiss_hnsw``: ``IndexHNSWFlat`` (Malkov & Yashunin, "Efficient and robust approximate nearest
  neighbor search using HNSW graphs", TPAMI 2018), inner product on unit rows, M=32.
* ``faiss_ivfpq``: ``IndexIVFPQ`` (Jegou et al., TPAMI 2011) + ``IndexRefineFlat`` exact re-rank.
* ``lance_*``: LanceDB's IVF_SQ / IVF_PQ / IVF_HNSW_SQ built by ``ChipIndex.build_ann`` on a
  ``ChipIndex`` filled through ``ChipIndex.add`` (the product's storage path); queried through the
  table for ids only (as FAISS is) and once through ``ChipIndex.search`` (full hits).

Run (about 25 minutes on 2 cores, writes ``bench/results/scale_search.json``):
``nice -n 10 .venv/bin/python bench/bench_scale_search.py [--rows 100000 300000 1000000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from scale_vectors import CACHE, Synthesiser, embed_real, split_real  # noqa: E402

OUT = ROOT / "bench" / "results" / "scale_search.json"
K = 10
BATCH = 32


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(g[g >= 0]) & set(t)) / K for g, t in zip(got, truth, strict=True)])
    )


def exact_topk(x: np.ndarray, q: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.zeros((len(q), K), np.int64)
    for s in range(0, len(x), chunk):
        sc = q @ x[s : s + chunk].T
        idx = np.argpartition(-sc, K, axis=1)[:, :K]
        cs = np.concatenate([best_s, np.take_along_axis(sc, idx, 1)], 1)
        ci = np.concatenate([best_i, idx + s], 1)
        o = np.argsort(-cs, 1)[:, :K]
        best_s, best_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)
    return best_i


def time_search(search, queries: np.ndarray, single: int) -> tuple[np.ndarray, dict]:
    """ids of every query (batched), single-query latency over the first ``single``, batch latency."""
    search(queries[:2])  # warm
    _threads(1)  # one query, one core: what a server thread gives each request
    lat1 = []
    for q in queries[:single]:
        t = time.perf_counter()
        search(q[None])
        lat1.append((time.perf_counter() - t) * 1e3)
    _threads(os.cpu_count() or 1)
    latb, ids = [], []
    for s in range(0, len(queries), BATCH):
        part = queries[s : s + BATCH]
        t = time.perf_counter()
        ids.append(search(part))
        latb.append((time.perf_counter() - t) * 1e3 / len(part))
    single_p = pct(lat1)
    return np.concatenate(ids), {
        "single": single_p,
        "batched_per_query": pct(latb),
    }


def _threads(n: int) -> None:
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass


def record(result: dict) -> None:
    OUT.write_text(json.dumps(result, indent=2))


# -- methods -------------------------------------------------------------------------------------
def run_numpy(x, queries, truth, single):
    def search(q):
        sc = q @ x.T
        idx = np.argpartition(-sc, K, axis=1)[:, :K]
        return np.take_along_axis(idx, np.argsort(-np.take_along_axis(sc, idx, 1), 1), 1)

    ids, lat = time_search(search, queries, min(single, 50))
    return [{"params": {}, "recall_at_10": recall(ids, truth), **lat}], {
        "build_s": 0.0,
        "memory_bytes_per_row": x.shape[1] * 4,
        "disk_bytes_per_row": x.shape[1] * 4,
    }


def run_faiss_hnsw(x, queries, truth, single, m=32, ef_construction=64, efs=(16, 32, 64, 128, 256)):
    import faiss

    r0 = rss_bytes()
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(x)
    build = time.perf_counter() - t
    mem = rss_bytes() - r0
    disk = len(faiss.serialize_index(index))
    grid = []
    for ef in efs:
        index.hnsw.efSearch = ef
        ids, lat = time_search(lambda q: index.search(q, K)[1], queries, single)
        grid.append({"params": {"efSearch": ef}, "recall_at_10": recall(ids, truth), **lat})
    index = None
    gc.collect()
    return grid, {
        "build_s": round(build, 1),
        "memory_bytes_per_row": round(mem / len(x)),
        "disk_bytes_per_row": round(disk / len(x)),
        "M": m,
        "efConstruction": ef_construction,
    }


def run_faiss_ivfpq(x, queries, truth, single, probes=(8, 16, 32, 64)):
    import faiss

    n, d = x.shape
    nlist = int(2 * math.sqrt(n))
    r0 = rss_bytes()
    t = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFPQ(quant, d, nlist, d // 8, 8, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    ivf.train(x[rng.choice(n, min(n, 40 * nlist, 60_000), replace=False)])
    index = faiss.IndexRefineFlat(ivf)
    index.add(x)
    build = time.perf_counter() - t
    mem = rss_bytes() - r0
    disk = len(faiss.serialize_index(index))
    grid = []
    for p in probes:
        for refine in (4, 16):
            params = faiss.IVFPQSearchParameters(nprobe=p)
            rp = faiss.IndexRefineSearchParameters(k_factor=refine, base_index_params=params)
            ids, lat = time_search(
                lambda q, rp=rp: index.search(q, K, params=rp)[1], queries, single
            )
            grid.append(
                {
                    "params": {"nprobe": p, "k_factor": refine},
                    "recall_at_10": recall(ids, truth),
                    **lat,
                }
            )
    index = ivf = None
    gc.collect()
    return grid, {
        "build_s": round(build, 1),
        "memory_bytes_per_row": round(mem / n),
        "disk_bytes_per_row": round(disk / n),
        "nlist": nlist,
        "pq_bytes": d // 8,
    }


def fill_lance(x, folder: Path):
    from skylens.index.store import ChipIndex

    if folder.exists():
        shutil.rmtree(folder)
    idx = ChipIndex.create_or_open(
        folder, model_name="bench", model_version="v", embed_dim=x.shape[1]
    )
    t = time.perf_counter()
    for s in range(0, len(x), 50_000):
        idx.add(
            [
                {
                    "id": f"{s + i:09d}",
                    "path": f"/a/s{(s + i) // 1024}.tif",
                    "window": [0, 0, 256, 256],
                    "vector": x[s + i],
                }
                for i in range(min(50_000, len(x) - s))
            ]
        )
    idx.compact()
    return idx, time.perf_counter() - t


def run_lance(idx, kind, x, queries, truth, single):
    n = len(x)
    r0 = rss_bytes()
    before = sum(f.stat().st_size for f in idx.directory.rglob("*") if f.is_file())
    t = time.perf_counter()
    idx.build_ann(index_type=kind, force=True)
    build = time.perf_counter() - t
    after = sum(f.stat().st_size for f in idx.directory.rglob("*") if f.is_file())
    table = idx._table
    parts = idx.meta["ann"]["num_partitions"]
    if kind == "IVF_HNSW_SQ":
        grid_params = [
            {"nprobes": p, "ef": ef, "refine": 5}
            for p in (max(1, parts // 4), parts)
            for ef in (64, 256)
        ]
    else:
        fr = (0.1, 0.25, 0.5, 0.85) if kind == "IVF_SQ" else (0.25, 0.85)
        grid_params = [
            {"nprobes": max(1, round(parts * f)), "refine": r}
            for f in fr
            for r in ((5,) if kind == "IVF_SQ" else (20, 100))
        ]
    grid = []
    for p in grid_params:

        def search(q, p=p):
            out = []
            for v in q:
                s = table.search(v, vector_column_name="vector").distance_type("cosine").limit(K)
                s = s.nprobes(p["nprobes"]).refine_factor(p["refine"])
                if "ef" in p:
                    s = s.ef(p["ef"])
                got = [int(i) for i in s.select(["id"]).to_arrow().column("id").to_pylist()]
                out.append((got + [-1] * K)[:K])
            return np.asarray(out)

        ids, lat = time_search(search, queries, single)
        grid.append({"params": p, "recall_at_10": recall(ids, truth), **lat})
    mem = rss_bytes() - r0
    return grid, {
        "build_s": round(build, 1),
        "num_partitions": parts,
        "index_disk_bytes_per_row": round((after - before) / n),
        "rss_growth_bytes_per_row": round(max(mem, 0) / n),
    }


def chipindex_search_ms(idx, queries, single):
    lat = []
    for q in queries[:single]:
        t = time.perf_counter()
        idx.search(q, k=K)
        lat.append((time.perf_counter() - t) * 1e3)
    return pct(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument(
        "--methods",
        nargs="+",
        default=[
            "numpy",
            "faiss_hnsw",
            "faiss_ivfpq",
            "lance_IVF_SQ",
            "lance_IVF_PQ",
            "lance_IVF_HNSW_SQ",
        ],
    )
    args = ap.parse_args()
    real = embed_real()
    base, held = split_real(real, held_out=1000)
    syn = Synthesiser(base)
    queries = syn.queries(held, args.queries, seed=7)
    result = {
        "benchmark": "scale_search",
        "command": "nice -n 10 python bench/bench_scale_search.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "data": f"{len(base)} real chip embeddings (default model; NWPU-RESISC45/UCM/EuroSAT subsets) "
        "grown by within-group mixing + PCA-shaped noise; queries: perturbed held-out chips",
        "k": K,
        "queries": args.queries,
        "batch": BATCH,
        "sizes": {},
    }
    if OUT.exists():  # keep what an earlier run measured and this one does not redo
        old = json.loads(OUT.read_text())
        result["sizes"] = old.get("sizes", {})
        result["earlier_runs"] = old.get("earlier_runs", []) + [
            {k: old.get(k) for k in ("command", "date", "load_average_start", "load_average_end")}
        ]
    for n in args.rows:
        x = np.concatenate(list(syn.rows(n, seed=n)))
        truth = exact_topk(x, queries)
        size = result["sizes"].setdefault(str(n), {"methods": {}})
        size.pop("lance_fill_s", None)  # refilled below when a LanceDB method runs
        for method in args.methods:
            print(
                f"[{time.strftime('%H:%M:%S')}] {n:,} rows: {method} (load {os.getloadavg()[0]:.2f})",
                file=sys.stderr,
                flush=True,
            )
            if method.startswith("lance_"):
                if "lance_fill_s" not in size:
                    idx, fill = fill_lance(x, CACHE / f"lance_{n}")
                    size["lance_fill_s"] = round(fill, 1)
                grid, info = run_lance(idx, method[6:], x, queries, truth, args.single)
                info["chipindex_search_default"] = chipindex_search_ms(
                    idx, queries, min(args.single, 100)
                )
            else:
                grid, info = globals()[f"run_{method}"](x, queries, truth, args.single)
            size["methods"][method] = {**info, "grid": grid, "load_average": os.getloadavg()}
            record(result)
        shutil.rmtree(CACHE / f"lance_{n}", ignore_errors=True)
        del x
        gc.collect()
    result["load_average_end"] = os.getloadavg()
    record(result)


if __name__ == "__main__":
    main()
