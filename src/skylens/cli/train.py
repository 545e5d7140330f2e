"""``skylens train``: retrain the embedded default model's small trainable parts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import friendly, out, say, user_text
from skylens.errors import InputError

app = typer.Typer(
    help="Train the embedded default model's small trainable parts.", no_args_is_help=True
)


@app.command("align")
@friendly
def train_align_cmd(
    data: Annotated[Path, typer.Option(help="Root of the training data (../shared/data).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the heads.")] = Path(
        "src/skylens/weights"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    holdout: Annotated[
        bool, typer.Option(help="Also run the held-out-classes generalisation check.")
    ] = True,
) -> None:
    """Train skylens-lite's alignment heads on UCM-Captions train (never its test split)."""
    from skylens.train.align import AlignConfig, run
    from skylens.train.card import write_model_card

    if not (data / "ucm_captions" / "dataset.json").is_file():
        raise InputError(f"{data}: expected ucm_captions/dataset.json under the data root (--data)")
    result = run(data, out_dir, AlignConfig(seed=seed), holdout=holdout, log=say)
    card = write_model_card(out_dir, result, command=" ".join(["skylens", *sys.argv[1:]]))
    out.print(user_text(f"wrote {out_dir / 'skylens-lite.safetensors'} and {card}"))


@app.command("all")
@friendly
def train_all_cmd(
    data: Annotated[Path, typer.Option(help="Root of the training data (../shared/data).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the weights.")] = Path(
        "src/skylens/weights"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch and the towers.")] = 2,
) -> None:
    """Retrain every part of the default model (alignment heads, captioner, VQA heads)."""
    from skylens.train.all import train_all

    scores = train_all(
        data,
        out_dir,
        seed=seed,
        threads=threads,
        command=" ".join(["skylens", *sys.argv[1:]]),
        log=say,
    )
    test = scores["align"]["ucm_captions_test_retrieval"]["mR"]
    out.print(
        f"wrote the default model's weights and cards to {out_dir} (UCM-Captions test mR {test})"
    )


@app.command("caption")
@friendly
def train_caption_command(
    data: Annotated[Path, typer.Option(help="Root of the training data (../shared/data).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the captioner.")] = Path(
        "src/skylens/weights"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    threads: Annotated[int, typer.Option(help="CPU threads for torch and the tower.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    score_test: Annotated[
        bool, typer.Option(help="Score the test split once at the end, for the model card.")
    ] = True,
) -> None:
    """Train the default captioner on UCM-Captions train (val picks; test is only measured)."""
    from skylens.train.caption import CaptionTrainConfig, run, write_card

    root = data / "ucm_captions" if (data / "ucm_captions").is_dir() else data
    if not (root / "dataset.json").is_file():
        raise InputError(f"{data}: expected ucm_captions/dataset.json under the data root (--data)")
    cfg = CaptionTrainConfig(epochs=epochs, threads=threads, seed=seed)
    result = run(data, out_dir, cfg, score_test=score_test, log=say)
    card = write_card(out_dir, result, command=" ".join(["skylens", *sys.argv[1:]]))
    typer.echo(f"wrote {out_dir / 'skylens-lite-captioner.safetensors'} and {card}")


@app.command("vqa")
@friendly
def train_vqa_command(
    data: Annotated[
        Path, typer.Option(help="Root holding rsivqa_ucm/ and ucm_captions/ (../shared/data).")
    ] = Path("../shared/data"),
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the VQA heads.")] = Path(
        "src/skylens/weights"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch and onnxruntime.")] = 2,
) -> None:
    """Train skylens-lite's VQA heads on RSIVQA-UCM (split by UCM-Captions images; test only scored)."""
    from skylens.train.vqa import WEIGHTS_NAME, VQATrainConfig, run

    result = run(data, out_dir, VQATrainConfig(seed=seed, threads=threads), log=say)
    for kind, scores in result["heads"].items():
        typer.echo(
            f"{kind}: val {scores.get('val_accuracy', '-')}%, test {scores.get('test_accuracy', '-')}% "
            f"({scores.get('test_questions', 0)} held-out questions)"
        )
    typer.echo(f"wrote {Path(out_dir) / WEIGHTS_NAME} (+ .json, .md)")
