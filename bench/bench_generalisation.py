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
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results" / "generalisation.json"


def tower_comparison(names: list[str], cfg) -> dict:
    """Leave-one-source-out zero-shot top-1 of heads trained on each candidate's features."""
    from skylens.train import protocol as P
    from skylens.train.align import Embedder
    from skylens.train.tower_zoo import zoo_features

    prep = P.prepare(DATA, replace(cfg, sources=("ucm", "nwpu", "eurosat")))
    from skylens.datasets import get_dataset

    order = []  # the zoo's image order: each source's registry "all" split
    for name, folder in (
        ("ucm_captions", "ucm_captions"),
        ("nwpu_resisc45", "nwpu_resisc45_subset"),
        ("eurosat", "eurosat_rgb_subset"),
    ):
        order += [str(s["image"]) for s in get_dataset(name, DATA / folder, split="all")]
    row = {p: i for i, p in enumerate(order)}
    idx = np.array([row[str(it.image)] for it in prep.items])
    feats = {"lite0": (prep.feats["pooled"], prep.feats["logits"])}
    speed = {}
    for n in names:
        if n == "lite0" or "+" in n:
            continue
        f = zoo_features(n, [Path(p) for p in order], "scenes")
        feats[n] = (f["pooled"][idx], f["logits"][idx])
        speed[n] = round(float(f["img_per_s"]), 1)
    for n in [n for n in names if "+" in n]:
        parts = n.split("+")
        feats[n] = (np.concatenate([feats[p][0] for p in parts], 1), feats[parts[0]][1])
    src = np.array([it.source for it in prep.items])
    out = {}
    for n, (pooled, logits) in feats.items():
        tp = replace(prep, feats={"pooled": pooled, "logits": logits})
        out[n] = {"features": int(pooled.shape[1])}
        for source in ("eurosat", "nwpu"):
            heads = P.fit(tp, cfg, src != source)
            emb = Embedder(heads, 0.0, prep.text_tower)  # learned part only: the tower's own merit
            s, y = P.zero_shot_sims(emb, tp, P._select(tp, source), P.names_of(tp, source))
            out[n][f"leave_{source}_out_top1"] = P.top1(s, y)
        if n in speed:
            out[n]["img_per_s_while_extracting"] = speed[n]
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
    from skylens.train.protocol import run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--towers", default="", help="comma list from train/tower_zoo.py CANDIDATES, a+b = concat"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    cfg = AlignConfig(seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(DATA, Path(tmp), cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
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
        out["towers"] = tower_comparison(
            [t.strip() for t in args.towers.split(",") if t.strip()], cfg
        )
    out["examples_shipped_model"] = examples()
    out["seconds"] = round(time.time() - t0, 1)
    out["load_average"] = os.getloadavg()
    out["command"] = "PYTHONPATH=src python bench/bench_generalisation.py " + " ".join(sys.argv[1:])
    out["date"] = time.strftime("%Y-%m-%d")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, default=str))
    print(
        json.dumps(
            {k: out[k] for k in ("leave_eurosat_out", "leave_nwpu_out", "leave_classes_out_nwpu")},
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
