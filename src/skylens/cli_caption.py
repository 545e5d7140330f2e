"""CLI commands for captioning: ``skylens caption`` and ``skylens train caption``.

Thin faces (STYLE #8): parse, call the model's ``caption_images`` or
``skylens.train.caption.run``, format. ``register(app, train_app)`` adds the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from skylens.cli_errors import err, friendly
from skylens.errors import InputError, SkylensError

FORMATS = ("table", "json")
PROGRESS_FROM = 8  # images; fewer finish before a bar would be worth drawing
BATCH = 16  # images captioned together (one tower pass)


def caption_command(
    paths: Annotated[list[Path], typer.Argument(help="Image files, GeoTIFFs or folders.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")] = "default",
    beam: Annotated[int, typer.Option(help="Beam width (1 = greedy).")] = 3,
    max_tokens: Annotated[int, typer.Option(help="Most words in a caption.")] = 40,
    bands: Annotated[
        str | None, typer.Option(help="1-based bands rendered as RGB, e.g. 4,3,2.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Describe images in words: one caption per image (a folder captions every image in it)."""
    from skylens.imagery.files import iter_image_files
    from skylens.models import load
    from skylens.models.base import Captioner
    from skylens.tasks.common import load_scene_rgb

    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if beam < 1:
        raise InputError(f"--beam must be at least 1, got {beam}")
    if max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {max_tokens}")
    captioner = load(model)
    captioner.require(Captioner)
    files = list(iter_image_files(paths))
    if not files:
        raise InputError(f"no images found in {', '.join(str(p) for p in paths)}")
    rows: list[dict] = []
    pending: list[tuple[int, object]] = []  # (row, pixels) waiting for the next batch

    with _progress(len(files)) as bar:
        task = bar.add_task("captioning", total=len(files))

        def flush() -> None:
            if pending:
                captions = captioner.caption_images(
                    [pixels for _, pixels in pending], beam=beam, max_tokens=max_tokens
                )
                for (row, _), caption in zip(pending, captions, strict=True):
                    rows[row]["caption"] = caption
                bar.update(task, advance=len(pending))
                pending.clear()

        for path in files:
            try:
                pixels = load_scene_rgb(path, bands=bands)
            except SkylensError as exc:  # one unreadable image must not lose the others
                rows.append({"source": str(path), "caption": None, "error": str(exc)})
                bar.update(task, advance=1)
                continue
            rows.append({"source": str(path), "caption": None, "error": None})
            pending.append((len(rows) - 1, pixels))
            if len(pending) >= BATCH:
                flush()
        flush()
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        table = Table(title=f"captions ({captioner.name}, beam {beam})")
        table.add_column("image", overflow="fold")
        table.add_column("caption")
        for r in rows:
            table.add_row(r["source"], r["caption"] or f"[red]error: {r['error']}[/]")
        Console().print(table)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        err.print(f"[yellow]skipped[/] {r['error']}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _progress(n: int) -> Progress:
    """A Rich bar on stderr for many images (off for a few, or when stderr is not a terminal)."""
    import os

    shown = n >= PROGRESS_FROM and (err.is_terminal or os.environ.get("SKYLENS_PROGRESS") == "1")
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not shown,
    )


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
    result = run(data, out_dir, cfg, score_test=score_test, log=lambda m: err.print(m))
    card = write_card(out_dir, result, command=" ".join(["skylens", *sys.argv[1:]]))
    typer.echo(f"wrote {out_dir / 'skylens-lite-captioner.safetensors'} and {card}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    """Add ``caption`` to ``app`` and ``caption`` to ``train_app``."""
    app.command("caption")(friendly(caption_command))
    train_app.command("caption")(friendly(train_caption_command))
