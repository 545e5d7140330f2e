"""``skylens classify``, ``caption`` and ``ask``: what is in an image, in labels, words or answers.

``classify`` and ``caption`` take many files and folders in one call (one model load); with
``--format jsonl`` they print one JSON object per image as a line.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import (
    OutputFormat,
    check_format,
    emit_json,
    friendly,
    out,
    progress,
    user_text,
    warn,
)

app = typer.Typer()

PROGRESS_FROM = 8  # images; fewer finish before a bar would be worth drawing


@app.command("classify")
@friendly
def classify_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    labels: Annotated[str | None, typer.Option(help="Class names, comma-separated.")] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="File with one class name per line.")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Labels to show per image.")] = 3,
    model: Annotated[str, typer.Option(help="Model name.")] = "default",
    bands: Annotated[str | None, typer.Option(help="1-based bands rendered as RGB.")] = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, csv, json or jsonl.")
    ] = OutputFormat.table,
) -> None:
    """Zero-shot scene classification from class names."""
    from skylens.imagery import list_image_files
    from skylens.models import load
    from skylens.tasks.classify import classify, parse_labels

    fmt = check_format(fmt, ("table", "csv", "json", "jsonl"))
    names = parse_labels(labels, labels_file)
    enc = load(model)
    files = list_image_files(images)
    with progress(shown=len(files) >= PROGRESS_FROM, unit="images") as bar:
        task = bar.add_task("classifying", total=len(files), rate="")
        results = classify(
            enc, files, names, top=top, bands=bands,
            progress=lambda n: bar.update(task, advance=n),
        )  # fmt: skip
    if fmt in (OutputFormat.json, OutputFormat.jsonl):
        emit_json([r.to_dict() for r in results], lines=fmt is OutputFormat.jsonl)
    elif fmt is OutputFormat.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["source", "rank", "label", "score", "error"])
        for r in results:
            if r.error:
                w.writerow([r.source, "", "", "", r.error])
            for rank, (lab, sc) in enumerate(zip(r.labels, r.scores, strict=True), 1):
                w.writerow([r.source, rank, lab, sc, ""])
    else:
        _classify_table(results, names, top, enc.name)
    if any(r.error for r in results):
        raise typer.Exit(1)


def _classify_table(results, names: list[str], top: int, model: str) -> None:
    from rich.table import Table

    shown = min(top, len(names))
    table = Table(title=f"zero-shot over {len(names)} classes ({user_text(model)})")
    table.add_column("image")
    for i in range(shown):
        table.add_column(f"#{i + 1}")
    for r in results:
        cells = [f"{user_text(lab)} ({sc:.2f})" for lab, sc in zip(r.labels, r.scores, strict=True)]
        if r.error:
            cells = [f"[red]{user_text(r.error)}[/]"] + [""] * (shown - 1)
        table.add_row(user_text(Path(r.source).name), *cells)
    out.print(table)


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
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table or json.")
    ] = OutputFormat.table,
    kb: Annotated[
        Path | None,
        typer.Option("--kb", help="Answer from this knowledge base, with citations (skylens kb)."),
    ] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="With --kb: model that phrases the answer.")
    ] = None,
) -> None:
    """Answer a question about an image (questions a model cannot answer are refused with the reason)."""
    from skylens.models import load
    from skylens.models.answerer import check_question
    from skylens.tasks.ask import ask_image
    from skylens.tasks.common import load_scene_rgb

    fmt = check_format(fmt, ("table", "json"))
    check_question(question)
    if kb is not None:  # knowledge no pixel holds: retrieval over the KB with the image as query
        from skylens.cli.kb import print_answer
        from skylens.tasks.rag import answer_question

        print_answer(answer_question(kb, question, image=image, llm=llm), fmt.value)
        return
    answer = ask_image(load(model), load_scene_rgb(image, bands=bands), question)
    if fmt is OutputFormat.json:
        emit_json(answer.to_dict())
    else:
        why = f"; {answer.reason}" if answer.reason else ""
        out.print(
            f"[bold]{user_text(answer.text)}[/]  ({user_text(answer.kind)}{user_text(why)})",
            highlight=False,
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
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, json or jsonl.")
    ] = OutputFormat.table,
) -> None:
    """Describe images in words: one caption per image (a folder captions every image in it)."""
    from skylens.imagery import list_image_files
    from skylens.tasks.caption import caption_files, captioner_for, check_caption_options

    fmt = check_format(fmt, ("table", "json", "jsonl"))
    check_caption_options(beam, max_tokens)
    captioner = captioner_for(model)  # a model that cannot caption fails before any reading
    files = list_image_files(paths)
    with progress(shown=len(files) >= PROGRESS_FROM, unit="images") as bar:
        task = bar.add_task("captioning", total=len(files), rate="")
        rows = caption_files(
            captioner, files, beam=beam, max_tokens=max_tokens, bands=bands,
            progress=lambda n: bar.update(task, advance=n),
        )  # fmt: skip
    if fmt in (OutputFormat.json, OutputFormat.jsonl):
        emit_json([r.to_dict() for r in rows], lines=fmt is OutputFormat.jsonl)
    else:
        from rich.table import Table

        table = Table(title=f"captions ({user_text(captioner.name)}, beam {beam})")
        table.add_column("image", overflow="fold")
        table.add_column("caption")
        for r in rows:
            text = (
                user_text(r.caption) if r.error is None else f"[red]error: {user_text(r.error)}[/]"
            )
            table.add_row(user_text(r.source), text)
        out.print(table)
    failed = [r for r in rows if r.error]
    for r in failed:
        warn("skipped", r.error)
    if failed:
        raise typer.Exit(1)
