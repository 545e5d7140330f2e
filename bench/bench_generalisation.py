"""Generalisation protocol of the default model: one command, one JSON.

    PYTHONPATH=src python bench/bench_generalisation.py [--towers lite0,mobilenetv2] [--quick]

Runs ``skylens.train.protocol.run`` (the same function ``skylens train align`` uses) into a
scratch folder: leave-one-source-out (train without EuroSAT -> zero-shot EuroSAT; without NWPU
-> zero-shot NWPU), leave-classes-out within NWPU, the in-domain UCM / NWPU / EuroSAT numbers,
and calibration ECE before/after. ``--towers`` adds the tower comparison (same heads, same
protocol, pooled features of each candidate; ``train/tower_zoo.py``). Examples: the shipped
model's captions and classifications of a few held-out NWPU and EuroSAT images. Writes
``bench/results/generalisation.json``. Tower features are cached under ``SKYLENS_CACHE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results" / "generalisation.json"


def tower_comparison(names: list[str]) -> dict:
    """Leave-one-source-out zero-shot top-1 of a closed-form ridge probe (tower features ->
    MiniLM class-prompt embedding; ``tower_zoo.ridge_probe_zero_shot``) on each candidate."""
    from skylens.datasets import get_dataset
    from skylens.models import towers
    from skylens.models.base import RS_TEMPLATES
    from skylens.models.class_descriptions import class_prompts
    from skylens.train.align import item_features
    from skylens.train.sources import training_items
    from skylens.train.tower_zoo import ridge_probe_zero_shot, zoo_features

    items = training_items(DATA, ("ucm", "nwpu", "eurosat"), towers.cache_dir() / "train")
    lite0 = item_features(items, towers.ImageTower())["pooled"]
    order = []  # the zoo's image order: each source's registry "all" split
    for name, folder in (
        ("ucm_captions", "ucm_captions"),
        ("nwpu_resisc45", "nwpu_resisc45_subset"),
        ("eurosat", "eurosat_rgb_subset"),
    ):
        order += [str(s["image"]) for s in get_dataset(name, DATA / folder, split="all")]
    row = {p: i for i, p in enumerate(order)}
    idx = np.array([row[str(it.image)] for it in items])
    feats, speed = {}, {}
    for n in names:
        parts = []
        for part in n.split("+"):
            if part == "lite0":
                parts.append(lite0)
                continue
            f = zoo_features(part, [Path(p) for p in order], "scenes")
            parts.append(f["pooled"][idx])
            speed[part] = round(float(f["img_per_s"]), 1)
        feats[n] = np.concatenate(parts, 1)
    text = towers.TextTower()

    def prompt_mean(name: str) -> np.ndarray:
        e = text.encode(class_prompts(name, RS_TEMPLATES)).mean(0)
        return e / np.linalg.norm(e)

    concept_emb = {c: prompt_mean(c) for c in {it.concept for it in items}}
    src = np.array([it.source for it in items])
    train = np.array([it.role == "train" for it in items])
    out = {}
    for n, x in feats.items():
        out[n] = {"features": int(x.shape[1])}
        for held in ("eurosat", "nwpu"):
            tr, te = (src != held) & train, src == held
            classes = sorted({it.label_name for it in items if it.source == held})
            class_emb = np.stack([prompt_mean(c) for c in classes])
            y = np.array([classes.index(items[i].label_name) for i in np.where(te)[0]])
            target = np.stack([concept_emb[items[i].concept] for i in np.where(tr)[0]])
            out[n][f"leave_{held}_out_ridge_top1"] = ridge_probe_zero_shot(
                x[tr], target, x[te], class_emb, y
            )
    out["img_per_s_while_extracting"] = speed
    return out


def examples(n_per: int = 4) -> list[dict]:
    """Captions and classifications of the shipped model on held-out NWPU / EuroSAT images."""
    import skylens
    from skylens.datasets import get_dataset, load_image
    from skylens.tasks.classify import classify_arrays

    model = skylens.load("default")
    rows = []
    for name, folder in (
        ("nwpu_resisc45", "nwpu_resisc45_subset"),
        ("eurosat", "eurosat_rgb_subset"),
    ):
        ds = get_dataset(name, DATA / folder, split="test")
        pick = np.linspace(0, len(ds) - 1, n_per).astype(int)
        samples = [ds[int(i)] for i in pick]
        images = [load_image(s) for s in samples]
        caps = model.caption_images(images)
        preds = classify_arrays(model, images, ds.classes, top=2)
        for s, cap, (labels, scores) in zip(samples, caps, preds, strict=True):
            rows.append(
                {
                    "dataset": name,
                    "image": s["id"],
                    "class": ds.classes[s["label"]],
                    "caption": cap,
                    "top2": list(zip(labels, scores, strict=True)),
                }
            )
    return rows


def main() -> None:
    from skylens.train.align import AlignConfig
    from skylens.train.card import write_model_card
    from skylens.train.protocol import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--towers", default="", help="comma list of tower_zoo CANDIDATES; a+b = concat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the heads trained here (default: discard)")
    ap.add_argument("--examples-only", action="store_true", help="only refresh the examples")
    args = ap.parse_args()
    t0 = time.time()
    if args.examples_only:
        out = json.loads(OUT.read_text())
        out["examples_shipped_model"] = examples()
        OUT.write_text(json.dumps(out, indent=1, default=str))
        return
    cfg = AlignConfig(seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        where = args.out or Path(tmp)
        result = run(DATA, where, cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.out:
            write_model_card(where, result, command="skylens train all --data ../shared/data")
    s = result["scores"]
    out = {
        "benchmark": "generalisation",
        "protocol": "skylens.train.protocol.run (see its docstring)",
        "leave_eurosat_out": s.get("leave_eurosat_out"),
        "leave_nwpu_out": s.get("leave_nwpu_out"),
        "leave_classes_out_nwpu": s.get("leave_classes_out_nwpu"),
        "in_domain": {
            k: v for k, v in s.items() if k.endswith("_top1") or k.endswith("_retrieval")
        },
        "calibration": s.get("calibration"),
        "beta_selection": s.get("beta_selection"),
        "recipe": result["config"]["train"]["recipe"],
        "data": result["config"]["train"]["data"],
    }
    if args.towers:
        out["towers"] = tower_comparison([t.strip() for t in args.towers.split(",") if t.strip()])
    out["seconds"] = round(time.time() - t0, 1)
    out["load_average"] = os.getloadavg()
    out["command"] = "PYTHONPATH=src python bench/bench_generalisation.py " + " ".join(sys.argv[1:])
    out["date"] = time.strftime("%Y-%m-%d")
    out["examples_shipped_model"] = "run with --examples-only once the weights are in place"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, default=str))
    keys = ("leave_eurosat_out", "leave_nwpu_out", "leave_classes_out_nwpu")
    print(json.dumps({k: out[k] for k in keys}, indent=1, default=str))


if __name__ == "__main__":
    main()
