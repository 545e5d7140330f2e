"""Ingest throughput and memory: skylens's pipeline vs a naive per-image loop vs the model ceiling.

Builds an N x N GeoTIFF mosaic (default 8,192 x 8,192 px: 32 x 32 real UCM land-use tiles of
256 px, written tiled and compressed with a UTM CRS), then, each in its own process so peak RSS is
its own:

* ``pipeline``: ``skylens index`` path (``skylens.index.ingest``), default model, tile 256, overlap 0;
* ``naive``: for each tile image file: PIL open -> eager torch EfficientNet-Lite0 + heads, batch 1
  -> append one row to LanceDB (what a research script does), on a subset, extrapolated per chip;
* ``ceiling``: the image tower's forward pass alone on random batches (onnxruntime, batch 64), and
  eager torch for reference.

Run: ``.venv/bin/python bench/bench_ingest.py`` (about 3 minutes on 2 cores); writes
``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "ingest"
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))


def make_mosaic(path: Path, grid: int, seed: int = 0) -> Path:
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    tiles = sorted((DATA / "ucm_landuse" / "Images").glob("*/*.jpg"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tiles), grid * grid, replace=grid * grid > len(tiles))
    side = 256 * grid
    profile = dict(
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        crs="EPSG:32611",
        transform=from_origin(500000.0, 3800000.0, 0.3, 0.3),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        for k, t in enumerate(pick):
            r, c = divmod(k, grid)
            arr = np.asarray(Image.open(tiles[t]).convert("RGB").resize((256, 256)))
            dst.write(
                arr.transpose(2, 0, 1), window=rasterio.windows.Window(c * 256, r * 256, 256, 256)
            )
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_pipeline(mosaic: Path) -> dict:
    import skylens
    from skylens.index.ingest import ingest
    from skylens.index.store import ChipIndex

    model = skylens.load("default")
    idx_dir = WORK / "pipeline-index"
    shutil.rmtree(idx_dir, ignore_errors=True)
    idx = ChipIndex.create_or_open(
        idx_dir, model_name=model.name, model_version=model.version, embed_dim=model.embed_dim
    )
    t0 = time.perf_counter()
    report = ingest([mosaic], idx, model, size=256, overlap=0, batch_size=64)
    dt = time.perf_counter() - t0
    return {
        "chips": report.chips_added,
        "seconds": round(dt, 2),
        "chips_per_s": round(report.chips_added / dt, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_naive(n: int) -> dict:
    import lancedb
    import pyarrow as pa
    import torch
    from PIL import Image

    import skylens

    model = skylens.load("default")
    net = model.image_tower.torch_module()
    torch.set_num_threads(os.cpu_count() or 1)
    tiles = sorted((DATA / "ucm_landuse" / "Images").glob("*/*.jpg"))[:n]
    db_dir = WORK / "naive-db"
    shutil.rmtree(db_dir, ignore_errors=True)
    db = lancedb.connect(str(db_dir))
    table = None
    t0 = time.perf_counter()
    for i, p in enumerate(tiles):
        rgb = np.asarray(Image.open(p).convert("RGB"))
        with torch.inference_mode():
            _, _, pooled, logits = net(torch.from_numpy(model.preprocess([rgb])))
        vec = model.embed_tower_output(pooled.numpy(), logits.numpy())[0]
        row = pa.table({"id": [str(i)], "path": [str(p)], "vector": [vec.tolist()]})
        table = db.create_table("chips", row) if table is None else table
        if i:
            table.add(row)
    dt = time.perf_counter() - t0
    return {
        "chips": n,
        "seconds": round(dt, 2),
        "chips_per_s": round(n / dt, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_ceiling() -> dict:
    import torch

    import skylens

    model = skylens.load("default")
    x = np.random.default_rng(0).standard_normal((64, 3, 224, 224)).astype(np.float32)
    model.image_tower.run(x)
    t0 = time.perf_counter()
    reps = 4
    for _ in range(reps):
        model.image_tower.run(x)
    ort_rate = reps * 64 / (time.perf_counter() - t0)
    net = model.image_tower.torch_module().to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x[:32]).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        net(xt)
        t0 = time.perf_counter()
        net(xt)
        torch_rate = 32 / (time.perf_counter() - t0)
    return {
        "onnxruntime_batch64_img_per_s": round(ort_rate, 1),
        "torch_channels_last_batch32_img_per_s": round(torch_rate, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=32, help="mosaic is grid x grid tiles of 256 px")
    ap.add_argument("--naive", type=int, default=150, help="images in the naive loop")
    ap.add_argument("--part", choices=["all", "pipeline", "naive", "ceiling"], default="all")
    ap.add_argument("--mosaic", type=Path, default=None)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.part != "all":
        fn = {
            "pipeline": lambda: run_pipeline(args.mosaic),
            "naive": lambda: run_naive(args.naive),
            "ceiling": run_ceiling,
        }[args.part]
        print(json.dumps(fn()))
        return
    mosaic = WORK / f"mosaic_{args.grid * 256}.tif"
    if not mosaic.exists():
        t0 = time.perf_counter()
        make_mosaic(mosaic, args.grid)
        print(f"mosaic {mosaic} written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    results = {}
    for part in ("ceiling", "pipeline", "naive"):
        cmd = [
            sys.executable,
            __file__,
            "--part",
            part,
            "--mosaic",
            str(mosaic),
            "--naive",
            str(args.naive),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[part] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(part, results[part], file=sys.stderr)
    p, n, c = results["pipeline"], results["naive"], results["ceiling"]
    summary = {
        "mosaic_px": args.grid * 256,
        "speedup_vs_naive": round(p["chips_per_s"] / n["chips_per_s"], 1),
        "share_of_forward_ceiling": round(p["chips_per_s"] / c["onnxruntime_batch64_img_per_s"], 2),
    }
    out = {
        "benchmark": "ingest",
        "command": "python bench/bench_ingest.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": results,
        "summary": summary,
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "ingest.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(summary))
    shutil.rmtree(WORK / "pipeline-index", ignore_errors=True)
    shutil.rmtree(WORK / "naive-db", ignore_errors=True)


if __name__ == "__main__":
    main()
