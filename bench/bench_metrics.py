"""What skylens's metrics cost: caption metrics vs pycocoevalcap, and retrieval at scale.

Captions: UCM-Captions (all 2,100 images; hypothesis = each image's first sentence, references =
the other four; raw sentences, so tokenisation is part of the work), scored by

* **ours**: Python PTB tokenisation + BLEU-1..4 + ROUGE-L + CIDEr-D (``skylens.evaluate``);
* **pycocoevalcap**: its PTBTokenizer (Java, one JVM per call as coco-caption runs it, for the
  references and for the hypotheses) + ``Bleu(4)`` + ``Rouge()`` + ``Cider()``;
* METEOR (pycocoevalcap's jar; used by both, timed once) when Java is present.

Each timing is the best of ``--repeat`` runs, reported as seconds per 1,000 samples. The scores
of both pipelines are compared, and the Python tokenizer is compared token for token with the
Java one on the raw UCM sentences and on a seeded, punctuation-heavy rewrite of them.

Retrieval: ``RetrievalEvaluator`` on random unit 384-d vectors, 10,000 images x 50,000 captions
(5 per image), with wall time and peak working memory (tracemalloc), plus the plain argsort
protocol (AMFMN ``acc_i2t2``/``acc_t2i2``) against ours on a 2,000 x 10,000 subset.

Run: ``.venv/bin/python bench/bench_metrics.py`` (about 2 minutes on 2 cores); writes
``bench/results/metrics.json``. Without ``../shared/data`` the captions are generated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "src"))

from skylens.evaluate import CaptionEvaluator, RetrievalEvaluator  # noqa: E402
from skylens.evaluate.caption_metrics import (  # noqa: E402
    bleu,
    cider_d,
    meteor_unavailable_reason,
    rouge_l,
)
from skylens.evaluate.tokenizer import (  # noqa: E402
    COCO_PUNCTUATION,
    JavaPTBTokenizer,
    ptb_tokens,
    tokenize_all,
)


def best_of(repeat: int, fn):
    """(best seconds, last result) over ``repeat`` calls."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def load_captions() -> tuple[list[str], list[list[str]], str]:
    path = DATA / "ucm_captions" / "dataset.json"
    if path.is_file():
        images = json.loads(path.read_text())["images"]
        hyps = [im["sentences"][0]["raw"] for im in images]
        refs = [[s["raw"] for s in im["sentences"][1:]] for im in images]
        return hyps, refs, f"UCM-Captions ({path}), sentence 0 vs sentences 1-4"
    rng = random.Random(0)
    vocab = "there is a are many green trees buildings road river with and the near two".split()
    make = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 14))) + " ."  # noqa: E731
    refs = [[make() for _ in range(4)] for _ in range(2100)]
    return [make() for _ in range(2100)], refs, "generated (shared data not found)"


def messy(sentences: list[str], seed: int = 1) -> list[str]:
    """Punctuation-heavy rewrites: quotes, brackets, clitics, numbers, dashes, case."""
    rng = random.Random(seed)
    out = []
    for s in sentences:
        words = re.sub(r" ([.,;:!?])", r"\1", s).rstrip(".").split()
        new = []
        for w in words:
            r = rng.random()
            if not w.isalpha():
                new.append(w)
            elif r < 0.03:
                new.append(f'"{w}"')
            elif r < 0.05:
                new.append(f"({w})")
            elif r < 0.08:
                new.append(w + rng.choice([",", ";", ":"]))
            elif r < 0.09:
                new.append(w + "'s")
            elif r < 0.10 and w in ("is", "are", "was", "does", "has", "were"):
                new.append(w + "n't")
            elif r < 0.11:
                new.append(w + rng.choice(["-", "/"]) + rng.choice(words).strip(".,"))
            elif r < 0.12:
                new.append(w + rng.choice(["...", "!", "?"]))
            elif r < 0.125:
                new.append(str(rng.randint(1, 5000)) + rng.choice(["", "m", ".5", ",000", "%"]))
            elif r < 0.13:
                new.append("'" + w + "'")
            elif r < 0.135:
                new.append(w.upper())
            else:
                new.append(w)
        text = " ".join(new)
        text = text[:1].upper() + text[1:] if rng.random() < 0.5 else text
        out.append(text + rng.choice([".", ".", "", "!", "?", " .", "..."]))
    return out


def tokenizer_agreement(sentences: list[str], java: JavaPTBTokenizer) -> dict:
    theirs = java.tokens(sentences)
    raw = final = 0
    examples = []
    for i, (s, j) in enumerate(zip(sentences, theirs, strict=True)):
        p = ptb_tokens(s, sentences[i + 1] if i + 1 < len(sentences) else "")
        if p != j:
            raw += 1
            strip = lambda ts: [t for t in ts if t not in COCO_PUNCTUATION]  # noqa: E731
            if strip(p) != strip(j):
                final += 1
                if len(examples) < 3:
                    examples.append({"text": s, "java": " ".join(j), "python": " ".join(p)})
    n = len(sentences)
    return {
        "sentences": n,
        "identical_after_punctuation_removal": n - final,
        "agreement_percent": round(100 * (n - final) / n, 3),
        "raw_token_mismatches": raw,
        "examples_of_differences": examples,
    }


def bench_captions(repeat: int, with_meteor: bool) -> dict:
    hyps, refs, source = load_captions()
    n = len(hyps)
    per_k = lambda s: round(1000 * s / n, 4)  # noqa: E731
    out: dict = {"data": source, "samples": n, "references": sum(map(len, refs))}

    # ours
    flat = [r for rs in refs for r in rs]
    t_tok, (ref_tok, hyp_tok) = best_of(repeat, lambda: (tokenize_all(flat), tokenize_all(hyps)))
    r_tok, i = [], 0
    for rs in refs:
        r_tok.append([s.split() for s in ref_tok[i : i + len(rs)]])
        i += len(rs)
    h_tok = [h.split() for h in hyp_tok]
    t_bleu, ours_bleu = best_of(repeat, lambda: bleu(h_tok, r_tok)[0])
    t_rouge, ours_rouge = best_of(repeat, lambda: rouge_l(h_tok, r_tok)[0])
    t_cider, ours_cider = best_of(repeat, lambda: cider_d(h_tok, r_tok)[0])
    ev = CaptionEvaluator(("BLEU", "ROUGE-L", "CIDEr"))
    t_total, ours = best_of(repeat, lambda: ev(hyps, refs)["metrics"])
    out["ours_seconds_per_1000"] = {
        "ptb_tokenize_python": per_k(t_tok),
        "bleu_1_4": per_k(t_bleu),
        "rouge_l": per_k(t_rouge),
        "cider_d": per_k(t_cider),
        "total_evaluator_tokenize_bleu_rouge_cider": per_k(t_total),
    }

    # pycocoevalcap
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts_raw = {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)}
    res_raw = {i: [{"caption": h}] for i, h in enumerate(hyps)}
    java = shutil.which("java")
    coco: dict = {}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        t_jtok, (gts, res) = best_of(
            repeat, lambda: (PTBTokenizer().tokenize(gts_raw), PTBTokenizer().tokenize(res_raw))
        )
        coco["ptb_tokenize_java"] = per_k(t_jtok)
    else:  # score our tokens with their scorers
        t_jtok = 0.0
        gts = {i: rs for i, rs in enumerate(ref_tok_groups(ref_tok, refs))}
        res = {i: [h] for i, h in enumerate(hyp_tok)}
        coco["ptb_tokenize_java"] = None
    t_cb, (cb, _) = best_of(repeat, lambda: Bleu(4).compute_score(gts, res, verbose=0))
    t_cr, (cr, _) = best_of(repeat, lambda: Rouge().compute_score(gts, res))
    t_cc, (cc, _) = best_of(repeat, lambda: Cider().compute_score(gts, res))
    coco |= {
        "bleu_1_4": per_k(t_cb),
        "rouge_l": per_k(t_cr),
        "cider_d": per_k(t_cc),
        "total_tokenize_bleu_rouge_cider": per_k(t_jtok + t_cb + t_cr + t_cc),
    }
    out["pycocoevalcap_seconds_per_1000"] = coco
    out["speedup_total"] = round(
        coco["total_tokenize_bleu_rouge_cider"]
        / out["ours_seconds_per_1000"]["total_evaluator_tokenize_bleu_rouge_cider"],
        2,
    )
    theirs = {f"BLEU-{k + 1}": cb[k] for k in range(4)} | {"ROUGE-L": cr, "CIDEr": cc}
    out["scores"] = {
        "ours": {k: round(v, 6) for k, v in ours.items()},
        "pycocoevalcap": {k: round(float(v), 6) for k, v in theirs.items()},
        "max_abs_difference": float(max(abs(ours[k] - theirs[k]) for k in theirs)),
        "ours_with_separate_functions": {
            "BLEU-4": round(ours_bleu[3], 6),
            "ROUGE-L": round(ours_rouge, 6),
            "CIDEr": round(ours_cider, 6),
        },
    }
    if java:
        jt = JavaPTBTokenizer()
        out["tokenizer_agreement_with_java"] = {
            "ucm_raw_sentences": tokenizer_agreement(flat + hyps, jt),
            "punctuation_heavy_rewrites": tokenizer_agreement(messy(flat + hyps), jt),
        }
    if with_meteor:
        reason = meteor_unavailable_reason()
        if reason:
            out["meteor"] = {"unavailable": reason}
        else:
            from pycocoevalcap.meteor.meteor import Meteor

            t0 = time.perf_counter()
            m = Meteor()
            score, _ = m.compute_score(gts, res)
            t_meteor = time.perf_counter() - t0
            del m
            out["meteor"] = {
                "score": round(float(score), 6),
                "seconds_per_1000_including_jvm_start": per_k(t_meteor),
                "note": "one run; same jar for ours and pycocoevalcap",
            }
    return out


def ref_tok_groups(ref_tok: list[str], refs: list[list[str]]) -> list[list[str]]:
    out, i = [], 0
    for rs in refs:
        out.append(ref_tok[i : i + len(rs)])
        i += len(rs)
    return out


def argsort_protocol(sims: np.ndarray, owner: np.ndarray) -> dict:
    """AMFMN's acc_i2t2/acc_t2i2 for captions grouped by owner (any number per image)."""
    n_img, n_txt = sims.shape
    r_i = np.empty(n_img)
    for i in range(n_img):
        order = np.argsort(sims[i])[::-1]
        pos = np.empty(n_txt, np.int64)
        pos[order] = np.arange(n_txt)
        r_i[i] = pos[owner == i].min()
    r_t = np.empty(n_txt)
    for t in range(n_txt):
        order = np.argsort(sims[:, t])[::-1]
        r_t[t] = np.flatnonzero(order == owner[t])[0]
    rec = {f"i2t_R@{k}": 100 * np.mean(r_i < k) for k in (1, 5, 10)}
    rec |= {f"t2i_R@{k}": 100 * np.mean(r_t < k) for k in (1, 5, 10)}
    return rec


def bench_retrieval(n_img: int, n_txt: int, dim: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)

    def unit(n):
        x = rng.standard_normal((n, dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    img, txt = unit(n_img), unit(n_txt)
    owner = np.arange(n_txt) % n_img
    ev = RetrievalEvaluator()
    seconds, res = best_of(repeat, lambda: ev(img, txt, owner))
    tracemalloc.start()
    ev(img, txt, owner)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "images": n_img,
        "texts": n_txt,
        "dim": dim,
        "seconds": round(seconds, 3),
        "peak_working_memory_mb": round(peak / 2**20, 1),
        "full_matrix_mb_float32": round(n_img * n_txt * 4 / 2**20, 1),
        "full_matrix_mb_float64": round(n_img * n_txt * 8 / 2**20, 1),
        "mR": round(res["metrics"]["mR"], 4),
        "expected_mR_for_random_vectors": round(
            100
            * np.mean(
                [1 - (1 - k / n_txt) ** 5 for k in (1, 5, 10)] + [k / n_img for k in (1, 5, 10)]
            ),
            4,
        ),
    }
    # the argsort protocol on a subset, for reference and agreement
    sub_i, sub_t = min(2000, n_img), min(10000, n_txt)
    keep = owner < sub_i
    img_s, txt_s, own_s = img[:sub_i], txt[keep][:sub_t], owner[keep][:sub_t]
    t_ours, ours = best_of(repeat, lambda: ev(img_s, txt_s, own_s)["metrics"])
    t0 = time.perf_counter()
    ref = argsort_protocol(img_s @ txt_s.T, own_s)
    t_ref = time.perf_counter() - t0
    out["subset_vs_argsort_protocol"] = {
        "images": sub_i,
        "texts": int(len(txt_s)),
        "ours_seconds": round(t_ours, 3),
        "argsort_seconds": round(t_ref, 3),
        "max_abs_recall_difference": float(max(abs(ours[k] - ref[k]) for k in ref)),
    }
    return out


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    java = shutil.which("java")
    java_version = None
    if java:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        java_version = (proc.stderr or proc.stdout).splitlines()[0]
    from importlib.metadata import version

    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pycocoevalcap": version("pycocoevalcap"),
        "java": java_version,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--texts", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--no-meteor", action="store_true", help="skip the METEOR timing (Java)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "metrics.json")
    args = ap.parse_args()
    result = {
        "benchmark": "metrics",
        "command": "python bench/bench_metrics.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
    }
    t0 = time.perf_counter()
    result["captions"] = bench_captions(args.repeat, not args.no_meteor)
    print(json.dumps(result["captions"], indent=1), flush=True)
    result["retrieval"] = bench_retrieval(args.images, args.texts, args.dim, args.repeat)
    print(json.dumps(result["retrieval"], indent=1), flush=True)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
