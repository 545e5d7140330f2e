"""RSIVQA-UCM held-out accuracy per question type: the default answerer vs the zero-shot one.

Held out = the RSIVQA questions about UCM-Captions test images (skylens-lite's alignment heads
and its VQA heads never saw them; the VQA heads' hyper-parameters were chosen on val images).

* ``trained``: ``skylens.load("default").answer`` -- the path users run (``skylens ask``), through
  ``skylens.evaluate.runner.run_vqa``: trained heads from ``weights/skylens-lite-vqa.safetensors``.
* ``zero_shot``: the zero-shot answerer alone (vocabularies and presence thresholds fitted on the
  questions of UCM-Captions train images); count and location are declined.

Declined questions ("cannot answer with this model") count as wrong. Answers/s is measured over
the whole held-out run (image features once per image, then each question), on this machine's
CPU with ``SKYLENS_THREADS`` threads (default 2; the machine is shared with other jobs, so the
figure is a lower bound).

Run: ``.venv/bin/python bench/bench_vqa.py [--no-zero-shot]``; writes
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


def _zero_shot(model, train, test) -> dict:
    from skylens.datasets import load_image
    from skylens.evaluate.vqa import VQAEvaluator
    from skylens.models.answerer import ZeroShotAnswerer

    def embed(ds):
        paths = sorted({str(s["image"]) for s in ds})
        out = {}
        for i in range(0, len(paths), 64):
            chunk = paths[i : i + 64]
            embs = model.encode_images([load_image(p) for p in chunk])
            out.update(zip(chunk, embs, strict=True))
        return out

    t0 = time.perf_counter()
    answerer = ZeroShotAnswerer(model).fit(list(train), embed(train))
    test_emb = embed(test)
    answers = [answerer.answer_embedded(test_emb[str(s["image"])], s["question"]) for s in test]
    result = VQAEvaluator()(
        [a.text for a in answers],
        [s["answer"] for s in test],
        question_types=[s["question_type"] for s in test],
    )
    return {
        "metrics": result["metrics"],
        "per_type_counts": result["details"]["per_type_counts"],
        "declined": sum(not a.supported for a in answers),
        "presence_threshold": round(answerer.presence_threshold, 3),
        "train_questions": len(train),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    os.environ.setdefault("SKYLENS_THREADS", "2")
    import torch

    torch.set_num_threads(int(os.environ["SKYLENS_THREADS"]))
    import skylens
    from skylens.datasets import get_dataset
    from skylens.evaluate.runner import run_vqa
    from skylens.models.answerer import DEFAULT_VQA_WEIGHTS, default_answerer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot comparison")
    args = ap.parse_args()
    model = skylens.load("default")
    kw = dict(
        image_dir=DATA / "ucm_captions" / "images",
        image_splits=DATA / "ucm_captions" / "dataset.json",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 294 malformed lines are counted by the loader
        train = get_dataset("rsivqa", DATA / "rsivqa_ucm", split="train", **kw)
        test = get_dataset("rsivqa", DATA / "rsivqa_ucm", split="test", **kw)
    answerer = default_answerer(model)
    trained = run_vqa(model, test, split="test")
    card = json.loads(DEFAULT_VQA_WEIGHTS.with_suffix(".json").read_text())
    out = {
        "benchmark": "vqa",
        "dataset": "RSIVQA (UCM part), questions on UCM-Captions test images",
        "model": model.name,
        "model_version": model.version,
        "answerer": type(answerer).__name__,
        "vqa_weights": str(DEFAULT_VQA_WEIGHTS.relative_to(ROOT / "src")),
        "questions": len(test),
        "images": len({str(s["image"]) for s in test}),
        "trained": {
            "metrics": trained["metrics"],
            "per_type_counts": trained["details"]["per_type_counts"],
            "declined": trained["details"]["declined"],
            "answers_per_s": trained["details"]["answers_per_s"],
            "seconds": trained["meta"]["extra"]["seconds"],
            "heads": sorted(card["heads"]),
            "zero_shot_kinds": sorted(card.get("zero_shot_kinds", {})),
        },
        "threads": int(os.environ["SKYLENS_THREADS"]),
        "machine": f"{os.cpu_count()} CPU cores, shared with other jobs (loaded): speed is a lower bound",
        "command": "python bench/bench_vqa.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.no_zero_shot:
        out["zero_shot"] = _zero_shot(model, train, test)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "vqa_rsivqa_ucm.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
