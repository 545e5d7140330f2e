"""``skylens classify``, ``caption`` and ``ask``: what is in an image, in labels, words or answers."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skylens.cli.common import check_format, err, friendly, out, progress
from skylens.errors import InputError, SkylensError

app = typer.Typer()

PROGRESS_FROM = 8  # images; fewer finish before a bar would be worth drawing
BATCH = 16  # images captioned together (one tower pass)
FORMATS = ("table", "json")


@app.command("classify")
@friendly
def classify_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    labels: Annotated[str | None, typer.Option(help="Class names, comma-separated.")] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="File with one class name per line.")
    ] = None,
    top: Annotated[int, typer.Option(help="Labels to show per image.")] = 3,
    model: Annotated[str, typer.Option(help="Model name.")] = "default",
    bands: Annotated[str | None, typer.Option(help="1-based bands rendered as RGB.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Zero-shot scene classification from class names."""
    from skylens.imagery import iter_image_files
    from skylens.models import load
    from skylens.tasks.classify import classify, parse_labels

    fmt = check_format(format, ("table", "csv", "json"))
    names = parse_labels(labels, labels_file)
    enc = load(model)
    files = list(iter_image_files(images))
    with progress() as bar:
        task = bar.add_task("classifying", total=len(files), rate="")
        results = classify(
            enc, files, names, top=top, bands=bands, progress=lambda n: bar.update(task, advance=n)
        )
    if fmt == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "rank", "label", "score", "error"])
        for r in results:
            if r.error:
                w.writerow([r.source, "", "", "", r.error])
            for rank, (lab, sc) in enumerate(zip(r.labels, r.scores, strict=True), 1):
                w.writerow([r.source, rank, lab, sc, ""])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(title=f"zero-shot over {len(names)} classes ({enc.name})")
        table.add_column("image")
        for i in range(min(top, len(names))):
            table.add_column(f"#{i + 1}")
        for r in results:
            cells = [f"{lab} ({sc:.2f})" for lab, sc in zip(r.labels, r.scores, strict=True)]
            if r.error:
                cells = [f"[red]{r.error}[/]"] + [""] * (min(top, len(names)) - 1)
            table.add_row(Path(r.source).name, *cells)
        out.print(table)
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command("ask")
@friendly
def ask_cmd(
    image: Annotated[Path, typer.Argument(help="Image file or GeoTIFF.")],
    question: Annotated[str, typer.Argument(help="A question about the image.")],
    model: Annotated[
        str,
        typer.Option(help="Model that answers: default, hf:VLM, openai:URL#MODEL, or an encoder."),
    ] = "default",
    bands: Annotated[str | None, typer.Option(help="1-based bands rendered as RGB.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Answer a question about an image (questions a model cannot answer are refused with the reason)."""
    from skylens.models import load
    from skylens.models.answerer import check_question
    from skylens.tasks.ask import ask_image
    from skylens.tasks.common import load_scene_rgb

    fmt = check_format(format, ("table", "json"))
    check_question(question)
    answer = ask_image(load(model), load_scene_rgb(image, bands=bands), question)
    if fmt == "json":
        print(json.dumps(answer.to_dict(), indent=2))
    else:
        out.print(
            f"[bold]{answer.text}[/]  ({answer.kind}"
            + (f"; {answer.reason}" if answer.reason else "")
            + ")"
        )


@app.command("caption")
@friendly
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

    with progress(shown=len(files) >= PROGRESS_FROM) as bar:
        task = bar.add_task("captioning", total=len(files), rate="")

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
        out.print(table)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        err.print(f"[yellow]skipped[/] {r['error']}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
