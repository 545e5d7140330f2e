"""RSIVQA-UCM with the zero-shot answerer: accuracy per question type on held-out images.

Held out = the UCM-Captions test images (skylens-lite's heads never saw them); the answerer's
vocabularies and presence threshold are fitted on the questions of UCM-Captions train images.
Count and location questions are answered "cannot answer with this model" and count as wrong.

Run: ``.venv/bin/python bench/bench_vqa.py [--model default]``; writes
``bench/results/vqa_rsivqa_ucm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    import skylens
    from skylens.datasets import get_dataset, load_image
    from skylens.evaluate.vqa import VQAEvaluator
    from skylens.tasks.ask import ZeroShotAnswerer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = skylens.load(args.model)
    kw = dict(
        image_dir=DATA / "ucm_captions" / "images",
        image_splits=DATA / "ucm_captions" / "dataset.json",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 294 malformed lines are counted by the loader
        train = get_dataset("rsivqa", DATA / "rsivqa_ucm", split="train", **kw)
        test = get_dataset("rsivqa", DATA / "rsivqa_ucm", split="test", **kw)

    def embed(ds):
        paths = sorted({str(s["image"]) for s in ds})
        out = {}
        for i in range(0, len(paths), 64):
            chunk = paths[i : i + 64]
            for p, e in zip(
                chunk, model.encode_images([load_image(p) for p in chunk]), strict=True
            ):
                out[p] = e
        return out

    answerer = ZeroShotAnswerer(model).fit(list(train), embed(train))
    test_emb = embed(test)
    answers = [answerer.answer_embedded(test_emb[str(s["image"])], s["question"]) for s in test]
    result = VQAEvaluator()(
        [a.text for a in answers],
        [s["answer"] for s in test],
        question_types=[s["question_type"] for s in test],
    )
    out = {
        "benchmark": "vqa",
        "dataset": "RSIVQA (UCM part), questions on UCM-Captions test images",
        "model": model.name,
        "model_version": model.version,
        "questions": len(test),
        "images": len(test_emb),
        "train_questions": len(train),
        "presence_threshold": round(answerer.presence_threshold, 3),
        "answered": sum(a.supported for a in answers),
        "metrics": result["metrics"],
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python bench/bench_vqa.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "vqa_rsivqa_ucm.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
