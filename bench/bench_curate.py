"""Curate throughput on 10,000 generated images: from-folders, dedupe (with planted copies), export.

Writes 10 class folders of 256 x 256 JPEGs (quality 90): 9,000 distinct smooth random fields
(6 x 6 random colours, bicubic upsampling, mild noise: distinct perceptual hashes, unlike pure
noise) and 1,000 planted copies of 500 "evaluation" images kept in a separate folder: a third
re-encoded at JPEG quality 60, a third resized to 192 x 192, a third cropped by 5 % a side.
Then, each step timed on its own:

* ``from-folders`` over the 10,000 images (decode check, digest, captions, Parquet write);
* ``dedupe --against eval`` (exact + pHash, evaluation images hashed in 11 crop views): images/s,
  and how many planted copies it removed (by kind) and how many distinct images it removed by
  mistake;
* ``export --format webdataset`` of the deduplicated set: samples/s.

Run: ``PYTHONPATH=src nice -n 10 .venv/bin/python bench/bench_curate.py`` (about 3 minutes on 2
cores); writes ``bench/results/curate.json`` with the load average before and after each step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("jpeg60", "resized", "cropped")


def smooth(rng: np.random.Generator, side: int = 256) -> Image.Image:
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC), dtype=np.float32)
    im += rng.normal(0, 4, im.shape)
    return Image.fromarray(np.clip(im, 0, 255).astype(np.uint8))


def generate(work: Path, n: int, planted: int, n_eval: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    train, evals = work / "train", work / "eval"
    evals.mkdir(parents=True)
    eval_images = []
    for i in range(n_eval):
        im = smooth(rng)
        im.save(evals / f"eval_{i:04d}.png")
        eval_images.append(im)
    for i in range(n - planted):
        p = train / f"class_{i % 10}" / f"img_{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        smooth(rng).save(p, quality=90)
    for k in range(planted):
        src = eval_images[k % n_eval]
        kind = KINDS[k % 3]
        p = train / f"class_{k % 10}" / f"planted_{kind}_{k:04d}.jpg"
        if kind == "jpeg60":
            src.save(p, quality=60)
        elif kind == "resized":
            src.resize((192, 192), Image.BILINEAR).save(p, quality=90)
        else:
            src.crop((13, 13, 243, 243)).save(p, quality=90)
    return work


def timed(fn, *args, **kwargs) -> tuple[object, dict]:
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    return result, {
        "seconds": round(seconds, 2),
        "load_before": round(before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=1_000)
    parser.add_argument("--eval", type=int, default=500)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "curate")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "curate.json")
    args = parser.parse_args()

    from skylens.curate.dedupe import dedupe
    from skylens.curate.export import export
    from skylens.curate.from_folders import from_folders

    if args.work.exists():
        shutil.rmtree(args.work)
    t0 = time.perf_counter()
    generate(args.work, args.n, args.planted, args.eval)
    print(f"generated {args.n} images in {time.perf_counter() - t0:.1f} s", flush=True)
    w = args.work
    ds, t_ff = timed(from_folders, w / "train", w / "ds")
    t_ff["records_per_s"] = round(ds.count / t_ff["seconds"], 1)
    print("from-folders", t_ff, flush=True)
    clean, t_dd = timed(dedupe, w / "ds", w / "clean", against=[w / "eval"])
    t_dd["images_per_s"] = round((ds.count + args.eval) / t_dd["seconds"], 1)
    removed = [Path(r["image"]).stem for r in clean.removed()]
    t_dd["planted_removed"] = {k: sum(r.startswith(f"planted_{k}") for r in removed) for k in KINDS}
    t_dd["planted_per_kind"] = {
        k: sum(1 for i in range(args.planted) if KINDS[i % 3] == k) for k in KINDS
    }
    t_dd["distinct_removed_by_mistake"] = sum(not r.startswith("planted_") for r in removed)
    t_dd["removed_reasons"] = clean.manifest["steps"][-1]["removed"]
    print("dedupe", t_dd, flush=True)
    info, t_ex = timed(export, w / "clean", w / "wds", fmt="webdataset", shard_size=2000)
    t_ex["samples_per_s"] = round(info["samples"] / t_ex["seconds"], 1)
    t_ex["samples"] = info["samples"]
    print("export", t_ex, flush=True)
    result = {
        "command": "PYTHONPATH=src nice -n 10 .venv/bin/python bench/bench_curate.py",
        "images": args.n,
        "planted": args.planted,
        "eval_images": args.eval,
        "from_folders": t_ff,
        "dedupe_exact_phash_against_eval": t_dd,
        "export_webdataset": t_ex,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
