"""``skylens train all``: retrain every trainable part of ``skylens-lite`` in one call.

Order matters, because each part reads what the one before wrote: the alignment heads
(``align.py``; they decide the image features and the joint space), then the captioner over the
tower grid those heads leave (``caption.py``), then the VQA heads over the new joint embedding
(``vqa.py``). Each part writes its weights and model card into ``out``.
"""

from __future__ import annotations

from pathlib import Path

from skylens.errors import InputError

REQUIRED = ("ucm_captions/dataset.json", "nwpu_resisc45_subset", "eurosat_rgb_subset", "rsivqa_ucm")


def train_all(
    data_root: Path, out: Path, *, seed: int = 0, threads: int = 2, command: str = "", log=print
) -> dict:
    """Train alignment heads, captioner and VQA heads on ``data_root``; write them to ``out``.

    Args:
        data_root: the shared data folder (``../shared/data``).
        out: weights folder (``src/skylens/weights`` to replace the shipped model).
        seed: random seed of every part.
        threads: CPU threads for the captioner and VQA training.
        command: the command line, recorded in the model cards.
        log: where progress messages go.

    Returns:
        ``{"align": ..., "caption": ..., "vqa": ...}``: each part's scores.
    """
    from skylens.models.default import SkylensLite
    from skylens.train import align, caption, card, vqa

    data_root, out = Path(data_root), Path(out)
    missing = [r for r in REQUIRED if not (data_root / r).exists()]
    if missing:
        raise InputError(
            f"{data_root}: missing {', '.join(missing)} (point --data at ../shared/data)"
        )
    out.mkdir(parents=True, exist_ok=True)
    log("1/3 alignment heads")
    result = align.run(data_root, out, align.AlignConfig(seed=seed), log=log)
    card.write_model_card(out, result, command=command or "skylens train all")
    log("2/3 captioner")
    cap_cfg = caption.CaptionTrainConfig(seed=seed, threads=threads)
    cap = caption.run(
        data_root, out, cap_cfg, align_weights=out / "skylens-lite.safetensors", log=log
    )
    caption.write_card(out, cap, command=command or "skylens train all")
    log("3/3 VQA heads")
    model = SkylensLite(out / "skylens-lite.safetensors", threads=threads)
    answers = vqa.run(
        data_root, out, vqa.VQATrainConfig(seed=seed, threads=threads), model=model, log=log
    )
    return {"align": result["scores"], "caption": cap["scores"], "vqa": answers.get("heads", {})}
