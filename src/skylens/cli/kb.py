"""``skylens kb build|add|info|search|ask``: a knowledge base of documents, images and places.

Each command parses, calls one library function (``skylens.knowledge.build``,
``skylens.tasks.rag``) and formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skylens.cli.common import check_format, emit_json, err, escape, friendly, out, progress

app = typer.Typer(help="Knowledge base: build from documents/images/places, search, ask with citations.", no_args_is_help=True)  # fmt: skip

KbDir = Annotated[Path, typer.Option("--kb", help="Knowledge-base folder.")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="Embedding model (default: the one the KB was built with).")]  # fmt: skip
Llm = Annotated[str | None, typer.Option("--llm", help="Language model that phrases the answer from the cited passages, e.g. gguf:smollm2.")]  # fmt: skip
Fmt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]


def _build(sources, kb, model, gazetteer, min_population, add: bool, fmt: str) -> None:
    from skylens.knowledge.build import add_to_kb, build_kb

    fmt = check_format(fmt, ("table", "json"))
    with progress() as bar:
        task = bar.add_task("embedding passages", total=None, rate="")
        options = dict(gazetteer=gazetteer, min_population=min_population, progress=lambda n: bar.update(task, advance=n))  # fmt: skip
        if add:
            report = add_to_kb(sources, kb, model=model, **options)
        else:
            report = build_kb(sources, kb, model=model or "default", **options)
    if fmt == "json":
        emit_json(report.to_dict())
        return
    out.print(
        f"[bold]{escape(str(kb))}[/]: {report.added} passages added, {report.total} in all "
        f"({report.documents} documents, {report.images} images, {report.places} places read)"
    )
    for s in report.skipped:
        err.print(f"[yellow]skipped[/] {escape(s.reason)}", highlight=False, soft_wrap=True)


GazetteerOpt = Annotated[bool, typer.Option("--gazetteer/--no-gazetteer", help="Add GeoNames countries and large cities (offline).")]  # fmt: skip
MinPop = Annotated[int, typer.Option(help="Smallest city population the gazetteer adds.")]


@app.command("build")
@friendly
def build_cmd(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(help="Documents, image folders (image + .txt/.json description)."),
    ] = None,  # fmt: skip
    kb: KbDir = Path("kb"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="Embedding model, recorded in the KB.")
    ] = "default",  # fmt: skip
    gazetteer: GazetteerOpt = False,
    min_population: MinPop = 1_000_000,
    format: Fmt = "table",
) -> None:
    """Build a knowledge base (re-running adds only what is new)."""
    _build(sources or [], kb, model, gazetteer, min_population, False, format)


@app.command("add")
@friendly
def add_cmd(
    sources: Annotated[
        list[Path] | None, typer.Argument(help="Documents or image folders to add.")
    ] = None,  # fmt: skip
    kb: KbDir = Path("kb"),
    model: Model = None,
    gazetteer: GazetteerOpt = False,
    min_population: MinPop = 1_000_000,
    format: Fmt = "table",
) -> None:
    """Add sources to an existing knowledge base."""
    _build(sources or [], kb, model, gazetteer, min_population, True, format)


@app.command("info")
@friendly
def info_cmd(kb: Annotated[Path, typer.Argument(help="Knowledge-base folder.")], format: Fmt = "table") -> None:  # fmt: skip
    """What a knowledge base holds and which model built it."""
    from skylens.knowledge.store import KnowledgeBase

    fmt = check_format(format, ("table", "json"))
    info = KnowledgeBase.open(kb).info()
    if fmt == "json":
        emit_json(info)
        return
    table = Table(show_header=False, title=escape(str(kb)))
    for key, value in info.items():
        table.add_row(key, escape(str(value)))
    out.print(table)


def passages_table(passages, title: str) -> Table:
    table = Table(title=escape(title))
    for col in ("#", "score", "kind", "source", "page", "text"):
        table.add_column(col)
    for p in passages:
        text = p.text if len(p.text) < 160 else p.text[:157] + "..."
        table.add_row(
            str(p.n),
            f"{p.score:.2f}",
            p.kind,
            escape(Path(p.source).name),
            str(p.page),
            escape(text),
        )
    return table


@app.command("search")
@friendly
def search_cmd(
    kb: Annotated[Path, typer.Argument(help="Knowledge-base folder.")],
    query: Annotated[
        str, typer.Argument(help="What to look for (may be empty with --image).")
    ] = "",
    image: Annotated[
        Path | None,
        typer.Option(
            "--image", help="Query image (its embedding and, if georeferenced, its place)."
        ),
    ] = None,  # fmt: skip
    k: Annotated[int, typer.Option("-k", help="Passages to return.")] = 5,
    model: Model = None,
    format: Fmt = "table",
) -> None:
    """Hybrid search (BM25 + dense + image), fused and reranked."""
    from skylens.tasks.rag import search_kb

    fmt = check_format(format, ("table", "json"))
    passages = search_kb(kb, query, image=image, k=k, model=model)
    if fmt == "json":
        emit_json([p.to_dict() for p in passages])
    else:
        out.print(passages_table(passages, f"{query or image}"))


def print_answer(answer, fmt: str) -> None:
    """An answer with its citations (shared by ``kb ask`` and ``skylens ask --kb``)."""
    if fmt == "json":
        emit_json(answer.to_dict())
        return
    colour = "bold" if answer.supported else "bold yellow"
    out.print(f"[{colour}]{escape(answer.answer)}[/]", soft_wrap=True)
    for c in answer.citations:
        out.print(f"  [{c['n']}] {escape(c['source'])} p.{c['page']} chunk {c['chunk']} (score {c['score']:.2f})", highlight=False)  # fmt: skip
    for w in answer.warnings:
        err.print(f"[yellow]note:[/] {escape(w)}", soft_wrap=True)


@app.command("ask")
@friendly
def ask_cmd(
    kb: Annotated[Path, typer.Argument(help="Knowledge-base folder.")],
    question: Annotated[str, typer.Argument(help="A question (English).")],
    image: Annotated[
        Path | None, typer.Option("--image", help="An image the question is about.")
    ] = None,  # fmt: skip
    llm: Llm = None,
    k: Annotated[int, typer.Option("-k", help="Passages retrieved.")] = 5,
    model: Model = None,
    format: Fmt = "table",
) -> None:
    """Answer from the knowledge base with numbered citations (or say it cannot)."""
    from skylens.tasks.rag import answer_question

    fmt = check_format(format, ("table", "json"))
    print_answer(answer_question(kb, question, image=image, llm=llm, k=k, model=model), fmt.value)
