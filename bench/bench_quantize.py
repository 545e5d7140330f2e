"""int8 image tower (``skylens.models.quantize``): speed of the tower and what it costs in quality.

For the float32 tower and its static and dynamic int8 copies: images/s of the tower's forward
pass (batch 64, median of 6), the cosine between float32 and int8 embeddings of the same chips,
zero-shot top-1 on the EuroSAT-RGB and UC Merced test splits and text->image / image->text
retrieval on UCM-Captions' test split (``skylens.evaluate.runner``, the numbers ``skylens eval``
gives). Static calibration uses 256 NWPU-RESISC45 chips (no evaluation set).

Run: ``nice -n 10 .venv/bin/python bench/bench_quantize.py`` (about 5 minutes on 2 cores);
writes ``bench/results/scale_quantize.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
OUT = ROOT / "bench" / "results" / "scale_quantize.json"


def calibration_chips(n: int = 256) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((DATA / "nwpu_resisc45_subset").rglob("*.jpg"))
    pick = np.random.default_rng(0).choice(len(files), n, replace=False)
    return [np.asarray(Image.open(files[i]).convert("RGB")) for i in pick]


def tower_rate(model) -> float:
    x = np.random.default_rng(0).standard_normal((64, 3, 224, 224)).astype(np.float32)
    model.image_tower.run(x)
    times = []
    for _ in range(6):
        t = time.perf_counter()
        model.image_tower.run(x)
        times.append(time.perf_counter() - t)
    return round(64 / float(np.median(times)), 1)


def quality(model) -> dict:
    from skylens.datasets import get_dataset
    from skylens.evaluate.runner import run_classify, run_retrieval

    out = {}
    for name, root in (("eurosat", "eurosat_rgb_subset"), ("ucm_landuse", "ucm_landuse")):
        r = run_classify(model, get_dataset(name, DATA / root, split="test"), split="test")
        out[f"zero_shot_top1_{name}"] = round(float(r["metrics"]["top1"]), 2)
    ds = get_dataset("ucm_captions", DATA / "ucm_captions", split="test")
    r = run_retrieval(model, ds, split="test")
    out["retrieval_ucm_captions"] = {
        k: round(float(v), 2) for k, v in r["metrics"].items() if isinstance(v, (int, float))
    }
    return out


def main() -> None:
    import skylens
    from skylens.models.default import SkylensLite
    from skylens.models.quantize import use_int8

    probe = calibration_chips(64)  # not used for calibration: the agreement set
    calib = calibration_chips(256 + 64)[64:]
    result = {
        "benchmark": "scale_quantize",
        "command": "nice -n 10 python bench/bench_quantize.py",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "variants": {},
    }
    fp32 = skylens.load("default")
    ref = fp32.encode_images(probe)
    for variant in ("float32", "static", "dynamic"):
        model = fp32 if variant == "float32" else SkylensLite()
        t = time.perf_counter()
        if variant != "float32":
            use_int8(model, calib if variant == "static" else None, method=variant)
        prep = time.perf_counter() - t
        emb = model.encode_images(probe)
        row = {
            "version": model.version,
            "quantise_seconds": round(prep, 1),
            "tower_img_per_s_batch64": tower_rate(model),
            "cosine_to_float32_mean": round(float(np.mean(np.sum(emb * ref, 1))), 4),
            "cosine_to_float32_min": round(float(np.min(np.sum(emb * ref, 1))), 4),
            "tower_file_mb": round(Path(model.image_tower.onnx_path).stat().st_size / 1e6, 1),
            "load_average": os.getloadavg(),
        }
        row.update(quality(model))
        result["variants"][variant] = row
        print(variant, json.dumps(row), file=sys.stderr, flush=True)
        OUT.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
