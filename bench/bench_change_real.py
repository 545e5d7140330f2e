"""Change detection on real bi-temporal pairs with true masks (skylens issue 15).

Sets, all scored with one setting (no tuning per pair; ``change``'s defaults, ``tile=32``):

* **LEVIR-CD** (Chen & Shi 2020): the 12 real 256 x 256 pairs at 0.5 m in
  ``$SKYLENS_DATA/change_pairs/levir_cd`` (buildings built between the dates; 11 have a mask,
  ``test_113_0256`` has none and is reported but not scored).
* **planted** (a selection set, not a test set): real NWPU-RESISC45 scenes (Cheng et al. 2017)
  of land where building happens, with 3-6 blocks of buildings pasted from residential and
  industrial scenes, then a global gain/gamma/colour change, sensor noise and a 2 px shift of
  AFTER; the true mask is the pasted blocks. Seeded, generated on the fly.
* **mosaic**: ``bench_change_localize.bench_change`` on 2 seeded UCM mosaics (tile 256), with its
  controls (BEFORE vs itself: no change; two different mosaics: the whole scene changed).
* **identical**: LEVIR BEFOREs (the first ``--identical``) against themselves: no change.

Chip level: a 32 px chip is changed when >= 10 % of its pixels are (truth and prediction
alike); precision, recall, F1, Cohen's kappa, and the AUC of the chip scores. Pixel level:
precision, recall, F1 and IoU of the changed class. Pooled over the pairs of a set (micro).

Run: ``python bench/bench_change_real.py`` (a few minutes on 2 cores); writes
``bench/results/change_real.json`` and ``docs/change_levir.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
LEVIR = DATA / "change_pairs" / "levir_cd"
NWPU = DATA / "nwpu_resisc45_subset"
WORK = ROOT / "bench" / "work" / "change_real"
OUT = ROOT / "bench" / "results" / "change_real.json"
PICTURE = ROOT / "docs" / "change_levir.png"
TILE = 32
EVIDENCE = ["coarse-to-fine"]  # set from --evidence
CHIP_CHANGED = 0.10
PLANT_BASE = (
    "meadow",
    "desert",
    "farmland",
    "rectangular_farmland",
    "chaparral",
    "sparse_residential",
)
PLANT_SOURCE = ("dense_residential", "industrial_area", "medium_residential", "commercial_area")


def chip_fraction(mask: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Changed fraction of each ``tile`` chip (chips as ``change`` lays them: edge chips shifted in)."""
    from skylens.tasks.change.regions import chip_grid

    grid = chip_grid(mask.shape[1], mask.shape[0], tile)
    return np.array([[mask[r : r + h, c : c + w].mean() for c, r, w, h in row] for row in grid])


def scores_of(pairs: list[dict]) -> dict:
    """Chip- and pixel-level metrics pooled over pairs with ``truth``, ``pred``, ``chip_scores``."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    t = np.concatenate([(chip_fraction(p["truth"]) >= CHIP_CHANGED).ravel() for p in pairs])
    y = np.concatenate([(chip_fraction(p["pred"]) >= CHIP_CHANGED).ravel() for p in pairs])
    s = np.concatenate([np.nan_to_num(p["chip_scores"]).ravel() for p in pairs])
    tp, fp, fn = int((t & y).sum()), int((~t & y).sum()), int((t & ~y).sum())
    pt = np.concatenate([p["truth"].ravel() for p in pairs])
    pp = np.concatenate([p["pred"].ravel() for p in pairs])
    ptp, pfp, pfn = int((pt & pp).sum()), int((~pt & pp).sum()), int((pt & ~pp).sum())
    return {
        "pairs": len(pairs),
        "chips": int(t.size),
        "chips_truly_changed": int(t.sum()),
        "chip": {
            **_prf(tp, fp, fn),
            "kappa": round(float(cohen_kappa_score(t, y)), 4),
            "auc": round(float(roc_auc_score(t, s)), 4) if 0 < t.sum() < t.size else None,
        },
        "pixel": {
            **_prf(ptp, pfp, pfn),
            "iou": round(ptp / (ptp + pfp + pfn), 4) if ptp + pfp + pfn else None,
        },
    }


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
    }


def run_pair(model, before: Path, after: Path, truth: np.ndarray | None) -> tuple[dict, object]:
    from skylens.tasks.change import change

    t0 = time.perf_counter()
    res = change(before, after, model, tile=TILE, evidence=EVIDENCE[0])
    row = {
        "pair": before.name,
        "seconds": round(time.perf_counter() - t0, 2),
        "regions": len(res.regions),
        "changed_share": round(res.changed_share, 4),
        "threshold": res.threshold_method,
        "background_changed": res.background_changed,
        "uniform_change": res.uniform_change,
        "caption": res.caption,
    }
    if truth is not None:
        row["true_share"] = round(float(truth.mean()), 4)
    return row, res


def levir(model) -> tuple[dict, list, list]:
    from skylens.errors import SkylensError

    rows, scored, results = [], [], []
    for a in sorted((LEVIR / "A").glob("*.png")):
        lab = LEVIR / "label" / a.name
        truth = np.asarray(Image.open(lab).convert("L")) > 0 if lab.is_file() else None
        try:
            row, res = run_pair(model, a, LEVIR / "B" / a.name, truth)
        except SkylensError as exc:  # a pair the data set ships with mismatched sizes
            rows.append({"pair": a.name, "error": str(exc)})
            print(f"levir {a.name}: {exc}", flush=True)
            continue
        rows.append(row)
        results.append((a, res, truth))
        if truth is not None:
            scored.append({"truth": truth, "pred": res.mask, "chip_scores": res.scores})
            one = scores_of([scored[-1]])
            row["chip_kappa"], row["chip_f1"], row["pixel_iou"] = (
                one["chip"]["kappa"],
                one["chip"]["f1"],
                one["pixel"]["iou"],
            )
        print(
            f"levir {a.name}: {row.get('chip_kappa')} kappa, {row['regions']} regions, {row['seconds']} s",
            flush=True,
        )
    return scores_of(scored), rows, results


def identical(model, n: int) -> dict:
    from skylens.tasks.change import change

    out = []
    for a in sorted((LEVIR / "A").glob("*.png"))[:n]:
        res = change(a, a, model, tile=TILE)
        out.append({"pair": a.name, "regions": len(res.regions), "changed": res.changed})
    return {"pairs": len(out), "pairs_with_change": sum(o["changed"] for o in out), "per_pair": out}


def _images(classes) -> list[Path]:
    return sorted(p for c in classes for p in (NWPU / c).glob("*.jpg"))


def make_planted(seed: int, out: Path) -> tuple[Path, Path, np.ndarray]:
    """A planted pair: real BEFORE, AFTER with pasted building blocks, radiometric change, 2 px
    shift and noise; returns the paths and the true mask (BEFORE's grid)."""
    rng = np.random.default_rng(seed)
    base_pool, src_pool = _images(PLANT_BASE), _images(PLANT_SOURCE)
    before = np.asarray(
        Image.open(base_pool[rng.integers(len(base_pool))]).convert("RGB").resize((256, 256))
    )
    after = before.astype(np.float32).copy()
    truth = np.zeros((256, 256), bool)
    for _ in range(int(rng.integers(3, 7))):
        src = np.asarray(
            Image.open(src_pool[rng.integers(len(src_pool))]).convert("RGB").resize((256, 256))
        )
        h, w = (int(v) for v in rng.integers(20, 64, 2))
        y, x = (int(v) for v in rng.integers(0, 256 - 64, 2))
        sy, sx = (int(v) for v in rng.integers(0, 256 - 64, 2))
        after[y : y + h, x : x + w] = src[sy : sy + h, sx : sx + w]
        truth[y : y + h, x : x + w] = True
    gain = rng.uniform(0.75, 1.25, 3)
    gamma = rng.uniform(0.8, 1.25)
    after = 255.0 * (np.clip(after * gain, 0, 255) / 255.0) ** gamma + rng.normal(0, 3, after.shape)
    dy, dx = (int(v) for v in rng.choice([-2, 2], 2))
    after = np.roll(after, (dy, dx), axis=(0, 1))
    out.mkdir(parents=True, exist_ok=True)
    pb, pa = out / f"planted_{seed}_before.png", out / f"planted_{seed}_after.png"
    Image.fromarray(before).save(pb)
    Image.fromarray(np.clip(after, 0, 255).astype(np.uint8)).save(pa)
    return pb, pa, truth


def planted(model, seeds) -> tuple[dict, list]:
    rows, scored = [], []
    for s in seeds:
        pb, pa, truth = make_planted(s, WORK)
        row, res = run_pair(model, pb, pa, truth)
        rows.append(row)
        scored.append({"truth": truth, "pred": res.mask, "chip_scores": res.scores})
    return scores_of(scored), rows


def mosaics(model, seeds) -> dict:
    import bench_change_localize as bcl
    import mosaic

    bcl.WORK.mkdir(parents=True, exist_ok=True)
    pool = mosaic.class_folder_pool(split="test")
    truths, pairs = [], []
    for s in seeds:
        truths.append(mosaic.make_pair(bcl.WORK, f"m{s}", pool=pool, n=8, k=6, seed=s))
        pairs.append((bcl.WORK / f"m{s}_before.tif", bcl.WORK / f"m{s}_after.tif"))
    summary, _ = bcl.bench_change(model, truths, pairs)
    keep = ("tp", "fp", "fn", "precision", "recall", "f1", "control_before_vs_before_regions_total")
    out = {k: summary[k] for k in keep}
    out["different_scene_flagged"] = summary["different_scene_control"]["flagged"]
    out["different_scene_pairs"] = len(summary["different_scene_control"]["pairs"])
    return out


def picture(before: Path, after: Path, truth: np.ndarray, res, out: Path) -> Path:
    """before | after | true mask | predicted mask (red over AFTER, regions numbered)."""
    a = np.asarray(Image.open(before).convert("RGB"))
    b = np.asarray(Image.open(after).convert("RGB"))
    t = np.repeat((truth * 255).astype(np.uint8)[..., None], 3, axis=2)
    p = np.asarray(res.change_map(max_side=max(a.shape[:2])).convert("RGB"))
    gap = np.full((a.shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([a, gap, b, gap, t, gap, p], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["levir", "identical", "planted", "mosaic"])
    ap.add_argument("--planted-seeds", type=int, default=8)
    ap.add_argument("--identical", type=int, default=4, help="LEVIR BEFOREs compared with themselves")
    ap.add_argument("--evidence", default="coarse-to-fine", help="change(evidence=...)")
    ap.add_argument("--mosaic-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--figure-pair", default="test_2_0000_0000.png")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    import skylens

    EVIDENCE[0] = a.evidence
    model = skylens.load("default")
    t_start = time.perf_counter()
    report: dict = {
        "benchmark": "change_real",
        "issue": 15,
        "command": "python bench/bench_change_real.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_at_start": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": "default",
        "tile": TILE,
        "chip_changed_when": ">= 10 % of pixels changed",
        "settings": f"change() defaults, evidence={a.evidence} (no per-pair tuning)",
    }
    if "levir" in a.sets:
        summary, rows, results = levir(model)
        report["levir_cd"] = {
            **summary,
            "per_pair": rows,
            "targets": {"kappa_min": 0.55, "f1_min": 0.7, "pixel_iou_min": 0.4},
        }
        for p, res, truth in results:
            if p.name == a.figure_pair and truth is not None:
                report["picture"] = str(
                    picture(p, LEVIR / "B" / p.name, truth, res, PICTURE).relative_to(ROOT)
                )
        print(json.dumps({k: summary[k] for k in ("chip", "pixel")}), flush=True)
    if "identical" in a.sets:
        report["identical"] = identical(model, a.identical)
    if "planted" in a.sets:
        summary, rows = planted(model, range(a.planted_seeds))
        report["planted"] = {**summary, "per_pair": rows}
        print("planted", json.dumps({k: summary[k] for k in ("chip", "pixel")}), flush=True)
    if "mosaic" in a.sets:
        report["mosaic"] = mosaics(model, a.mosaic_seeds)
        print("mosaic", json.dumps(report["mosaic"]), flush=True)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["load_average_at_end"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
