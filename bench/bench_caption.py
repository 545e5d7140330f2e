"""UCM-Captions test-split captioning scores and speed of a model, through the run-time path.

Images go through ``model.caption_images`` exactly as ``skylens caption`` sends them (decoded
from disk, resized by the model; no cached training features). Scores come from
``skylens.evaluate.runner.run_caption`` (``CaptionEvaluator``: BLEU-1..4, METEOR through Java,
ROUGE-L, CIDEr-D, all on the coco-caption scale where CIDEr-D 2.8 is "280" in papers that print
x100). Speed is captions/s over the whole split, image decoding included, after one warm-up call
(which loads the captioner); it states the threads used and the machine's load average.

Run: ``.venv/bin/python bench/bench_caption.py [--model default] [--beam N] [--threads 2]``;
writes ``bench/results/caption_ucm.json`` and the report
``bench/results/eval_ucm_captions_caption_<model>.{json,md}``. The default beam is the one the
captioner's training chose on the val split (``skylens-lite-captioner.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--beam", type=int, default=None, help="default: chosen on val (or 3)")
    ap.add_argument("--threads", type=int, default=2, help="tower and decoder threads")
    args = ap.parse_args()
    os.environ["SKYLENS_THREADS"] = str(args.threads)  # read by the tower when it loads

    import torch

    import skylens
    from skylens.datasets import get_dataset, load_image
    from skylens.evaluate.report import write_report
    from skylens.evaluate.runner import run_caption
    from skylens.models.captioner import DEFAULT_CAPTIONER
    from skylens.models.towers import file_sha256

    torch.set_num_threads(args.threads)
    model = skylens.load(args.model)
    beam = args.beam
    captioner_digest = None
    if args.model == "default":
        doc = json.loads(DEFAULT_CAPTIONER.with_suffix(".json").read_text())
        beam = beam or doc["config"]["train"]["scores"]["chosen_beam"]
        captioner_digest = file_sha256(DEFAULT_CAPTIONER, 10)
    beam = beam or 3
    ds = get_dataset("ucm_captions", DATA / "ucm_captions", split="test")
    model.caption_images([load_image(ds[0])], beam=beam)  # warm-up: loads the captioner
    load_before = os.getloadavg()
    result = run_caption(model, ds, split="test", beam=beam)
    load_after = os.getloadavg()
    meta = result.pop("meta")
    picks = [0, len(ds) // 2, len(ds) - 1]  # three images of different scene classes
    examples = [
        {"id": str(ds[i]["id"]), "prediction": caption, "references": list(ds[i]["captions"])}
        for i, caption in zip(
            picks, model.caption_images([load_image(ds[i]) for i in picks], beam=beam), strict=True
        )
    ]
    command = "python bench/bench_caption.py " + " ".join(sys.argv[1:])
    machine = {
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "note": "shared 2-core machine, loaded by other jobs while measuring",
    }
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model)[:60]
    results = ROOT / "bench" / "results"
    report = results / f"eval_ucm_captions_caption_{tag}.json"
    write_report(
        result,
        report,
        report.with_suffix(".md"),
        model=meta["model"],
        weights_digest=meta["weights_digest"],
        dataset=meta["dataset"],
        split=meta["split"],
        samples=meta["samples"],
        date=meta["date"],
        command=command,
        extra={
            **meta["extra"],
            "beam": beam,
            "captioner_weights_digest": captioner_digest,
            **machine,
        },
    )
    out = {
        "benchmark": "ucm_captions test captioning",
        "model": model.name,
        "model_version": model.version,
        "captioner_weights_digest": captioner_digest,
        "beam": beam,
        "units": result["units"],
        "metrics": result["metrics"],
        "captions_per_s": result["details"]["captions_per_s"],
        "images": meta["samples"]["images"],
        "seconds": meta["extra"]["seconds"],
        **machine,
        "examples": examples,
        "unavailable": result["details"].get("unavailable"),
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
    }
    (results / "caption_ucm.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
