"""UCM-Captions retrieval and UCM land-use zero-shot for any model, through the run-time path.

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
    from skylens.evaluate.retrieval import RetrievalEvaluator
    from skylens.tasks.classify import classify_arrays
    from skylens.train.align import CLASS_NAMES, UcmCaptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    model = skylens.load(args.model)
    ucm = UcmCaptions.load(DATA / "ucm_captions")
    out: dict = {
        "benchmark": "retrieval+zeroshot",
        "model": model.name,
        "model_version": model.version,
    }
    t0 = time.perf_counter()
    for split in ("test",):
        imgs = load(ucm.paths[split])
        img_emb = model.encode_images(imgs)
        caps = [c for cs in ucm.captions[split] for c in cs]
        owner = np.repeat(np.arange(len(imgs)), [len(cs) for cs in ucm.captions[split]])
        out[f"ucm_captions_{split}"] = RetrievalEvaluator()(
            img_emb, model.encode_texts(caps), owner
        )["metrics"] | {
            "images": len(imgs),
            "captions": len(caps),
        }
        preds = classify_arrays(model, imgs, CLASS_NAMES, top=1)
        acc = np.mean(
            [p[0][0] == CLASS_NAMES[y] for p, y in zip(preds, ucm.labels[split], strict=True)]
        )
        out["ucm_landuse_zeroshot_captions_test_top1"] = round(100 * float(acc), 2)
    # all 2,100 land-use images (in-domain: 1,890 of them are UCM-Captions train/val images)
    root = DATA / "ucm_landuse" / "Images"
    folders = sorted(p.name for p in root.iterdir())
    paths = [p for f in folders for p in sorted((root / f).glob("*"))]
    labels = [folders.index(p.parent.name) for p in paths]
    correct = 0
    for i in range(0, len(paths), 128):
        preds = classify_arrays(model, load(paths[i : i + 128]), CLASS_NAMES, top=1)
        correct += sum(
            p[0][0] == CLASS_NAMES[y] for p, y in zip(preds, labels[i : i + 128], strict=True)
        )
    out["ucm_landuse_zeroshot_all_top1"] = round(100 * correct / len(paths), 2)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["command"] = "python bench/bench_retrieval.py " + " ".join(sys.argv[1:])
    out["date"] = time.strftime("%Y-%m-%d")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model)[:60]
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / f"retrieval_{tag}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
