"""CLI command ``skylens train vqa``: train the default model's VQA heads on RSIVQA-UCM.

Thin face (STYLE #8): parse, call ``skylens.train.vqa.run``, print where the weights went and
their held-out scores. ``register(app, train_app)`` adds the command to the main Typer app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli_errors import err, friendly


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

    result = run(
        data, out_dir, VQATrainConfig(seed=seed, threads=threads), log=lambda m: err.print(m)
    )
    for kind, scores in result["heads"].items():
        typer.echo(
            f"{kind}: val {scores.get('val_accuracy', '-')}%, test {scores.get('test_accuracy', '-')}% "
            f"({scores.get('test_questions', 0)} held-out questions)"
        )
    typer.echo(f"wrote {Path(out_dir) / WEIGHTS_NAME} (+ .json, .md)")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``skylens train vqa`` to the CLI (``app`` is accepted for symmetry with other faces)."""
    train_app.command("vqa")(friendly(train_vqa_command))
