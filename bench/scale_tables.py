"""Markdown tables of the scale benchmarks' JSON results (for docs/readme/scale.md).

Run: ``python bench/scale_tables.py`` (reads bench/results/{scale_search,ingest,scale_quantize}.json).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def _best_at(grid: list[dict], target: float) -> dict | None:
    """The fastest (single-query p99) setting reaching recall@10 >= target, else the best recall."""
    ok = [g for g in grid if g["recall_at_10"] >= target]
    if ok:
        return min(ok, key=lambda g: g["single"]["p99_ms"])
    return max(grid, key=lambda g: g["recall_at_10"]) if grid else None


def search_tables(d: dict, target: float = 0.95) -> str:
    lines = [
        f"Settings reaching recall@10 >= {target} (fastest p99 among them; best recall otherwise). "
        "Latency: one query at a time on one thread, and per query in batches of 32.",
        "",
        "| rows | method | setting | recall@10 | single p50 / p99 ms | batched p50 / p99 ms/query "
        "| build s | memory B/row | disk B/row | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    slopes: dict[str, list[tuple[int, float, float]]] = {}
    for n, size in sorted(d["sizes"].items(), key=lambda kv: int(kv[0])):
        for m, v in size["methods"].items():
            g = _best_at(v["grid"], target)
            if g is None:
                continue
            mem = v.get("memory_bytes_per_row", v.get("rss_growth_bytes_per_row", ""))
            disk = v.get("disk_bytes_per_row", v.get("index_disk_bytes_per_row", ""))
            params = ", ".join(f"{k}={x}" for k, x in g["params"].items()) or "exact"
            lines.append(
                f"| {int(n):,} | {m} | {params} | {g['recall_at_10']:.3f} | "
                f"{g['single']['p50_ms']:.2f} / {g['single']['p99_ms']:.2f} | "
                f"{g['batched_per_query']['p50_ms']:.2f} / {g['batched_per_query']['p99_ms']:.2f} | "
                f"{v.get('build_s', '')} | {mem} | {disk} | {v['load_average'][0]:.1f} |"
            )
            slopes.setdefault(m, []).append(
                (int(n), g["single"]["p50_ms"], float(v.get("build_s") or 0))
            )
    lines += ["", "Projection (log-log fit of the sizes measured; on paper beyond 1M):", ""]
    lines += [
        "| method | p50 ms ~ rows^a | p50 at 10M / 100M ms | build s at 10M / 100M |",
        "|---|---|---|---|",
    ]
    for m, pts in slopes.items():
        if len(pts) < 2:
            continue
        n = np.log([p[0] for p in pts])
        a, b = np.polyfit(n, np.log([max(p[1], 1e-3) for p in pts]), 1)
        proj = [math.exp(b) * x**a for x in (1e7, 1e8)]
        builds = [p for p in pts if p[2] > 0]
        if len(builds) >= 2:
            ab, bb = np.polyfit(np.log([p[0] for p in builds]), np.log([p[2] for p in builds]), 1)
            bproj = " / ".join(f"{math.exp(bb) * x**ab:,.0f}" for x in (1e7, 1e8))
        else:
            bproj = "-"
        lines.append(f"| {m} | a = {a:.2f} | {proj[0]:.2f} / {proj[1]:.2f} | {bproj} |")
    return "\n".join(lines)


def ingest_table(d: dict) -> str:
    lines = ["| part | round | rate | load avg |", "|---|---|---|---|"]
    key = {
        "ceiling": "onnxruntime_batch64_img_per_s",
        "pipeline": "chips_per_s",
        "naive": "chips_per_s",
        "ray": "chips_per_s",
    }
    for part, rounds in d["rounds"].items():
        for i, r in enumerate(rounds):
            lines.append(f"| {part} | {i} | {r[key[part]]} | {r['load_average'][0]} |")
    lines += ["", "Summary (medians of the rounds): `" + json.dumps(d["summary"]) + "`"]
    return "\n".join(lines)


def quant_table(d: dict) -> str:
    lines = [
        "| tower | img/s (batch 64) | file MB | cos to fp32 mean / min | zero-shot EuroSAT | zero-shot UCM | UCM-Captions mR | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in d["variants"].items():
        mr = v["retrieval_ucm_captions"].get("mR", "")
        lines.append(
            f"| {name} | {v['tower_img_per_s_batch64']} | {v['tower_file_mb']} | "
            f"{v['cosine_to_float32_mean']} / {v['cosine_to_float32_min']} | "
            f"{v['zero_shot_top1_eurosat']} | {v['zero_shot_top1_ucm_landuse']} | {mr} | "
            f"{v['load_average'][0]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (
        ("scale_search.json", search_tables),
        ("ingest.json", ingest_table),
        ("scale_quantize.json", quant_table),
    ):
        d = _load(name)
        if d:
            print(f"### {name}\n\n{fn(d)}\n")
