"""UCM-Captions retrieval and zero-shot top-1 (UCM, NWPU, EuroSAT held-out images) for any model,
through the run-time path.

Images go through ``model.encode_images`` exactly as ``skylens index`` sends them (no cached
training features), texts through ``model.encode_texts``.

Run: ``.venv/bin/python bench/bench_retrieval.py [--model default | openclip:ARCH:CKPT]``;
writes ``bench/results/retrieval_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))


def load(paths):
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def main() -> None:
    import skylens
    from skylens.datasets import get_dataset
    from skylens.evaluate.retrieval import RetrievalEvaluator
    from skylens.tasks.classify import classify_arrays

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    model = skylens.load(args.model)
    out: dict = {
        "benchmark": "retrieval+zeroshot",
        "model": model.name,
        "model_version": model.version,
    }
    t0 = time.perf_counter()
    test = get_dataset("ucm_captions", DATA / "ucm_captions", split="test")
    samples = list(test)
    imgs = load([s["image"] for s in samples])
    img_emb = model.encode_images(imgs)
    caps = [c for s in samples for c in s["captions"]]
    owner = np.repeat(np.arange(len(imgs)), [len(s["captions"]) for s in samples])
    out["ucm_captions_test"] = RetrievalEvaluator()(img_emb, model.encode_texts(caps), owner)[
        "metrics"
    ] | {"images": len(imgs), "captions": len(caps)}
    # zero-shot with each dataset's own class names, on images no head was trained on
    for key, name, folder, split in (
        ("ucm_landuse_zeroshot_captions_test_top1", "ucm_captions", "ucm_captions", "test"),
        ("nwpu_zeroshot_heldout_split_top1", "nwpu_resisc45", "nwpu_resisc45_subset", "test"),
        ("eurosat_zeroshot_heldout_split_top1", "eurosat", "eurosat_rgb_subset", "test"),
    ):
        ds = get_dataset(name, DATA / folder, split=split)
        correct = 0
        for i in range(0, len(ds), 128):
            chunk = [ds[j] for j in range(i, min(i + 128, len(ds)))]
            preds = classify_arrays(model, load([s["image"] for s in chunk]), ds.classes, top=1)
            correct += sum(
                p[0][0] == ds.classes[s["label"]] for p, s in zip(preds, chunk, strict=True)
            )
        out[key] = round(100 * correct / len(ds), 2)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = os.getloadavg()
    out["command"] = "python bench/bench_retrieval.py " + " ".join(sys.argv[1:])
    out["date"] = time.strftime("%Y-%m-%d")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model)[:60]
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / f"retrieval_{tag}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
