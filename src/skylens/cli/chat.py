"""``skylens chat``: a conversation over images, an index and a knowledge base.

Interactive in a terminal, or ``--script turns.txt --format json`` (one JSON object per turn,
one turn a line; blank lines and ``#`` comments skipped). Logic lives in
``skylens.tasks.chat``; this module reads turns and prints replies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import check_format, err, escape, friendly, out
from skylens.errors import InputError, SkylensError

app = typer.Typer()
MAX_SCRIPT_BYTES = 1 << 20


def read_script(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: script not found")
    if path.stat().st_size > MAX_SCRIPT_BYTES:
        raise InputError(f"{path}: script larger than 1 MiB")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _print_turn(result, fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
        return
    colour = "bold" if result.supported else "bold yellow"
    out.print(f"[dim]{result.expert} ({result.confidence:.2f})[/] [{colour}]{escape(result.answer)}[/]", soft_wrap=True)  # fmt: skip
    for c in result.citations:
        out.print(f"  [{c['n']}] {escape(c['source'])} p.{c['page']} (score {c['score']:.2f})", highlight=False)  # fmt: skip
    if result.geometry:
        out.print(
            f"  [dim]geometry: {len(result.geometry.get('features', []))} GeoJSON features[/]"
        )


@app.command("chat")
@friendly
def chat_cmd(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images to talk about (two for change questions).")
    ] = None,  # fmt: skip
    index: Annotated[
        Path | None, typer.Option("--index", help="Index folder for search turns.")
    ] = None,  # fmt: skip
    kb: Annotated[
        Path | None, typer.Option("--kb", help="Knowledge-base folder for knowledge turns.")
    ] = None,  # fmt: skip
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm", help="Language model that phrases knowledge and change answers (gguf:smollm2)."
        ),
    ] = None,  # fmt: skip
    model: Annotated[str, typer.Option("--model", "-m", help="Image-text model.")] = "default",
    script: Annotated[
        Path | None, typer.Option("--script", help="File of turns, one a line (non-interactive).")
    ] = None,  # fmt: skip
    format: Annotated[
        str, typer.Option("--format", "-f", help="table or json (one object per turn).")
    ] = "table",  # fmt: skip
) -> None:
    """Talk to imagery: each turn is routed to an expert (describe, scene, ask, search, localize, change, knowledge)."""
    from skylens.tasks.chat import ChatSession

    fmt = check_format(format, ("table", "json")).value
    turns = read_script(script) if script is not None else None
    session = ChatSession(images or [], model=model, index=index, kb=kb, llm=llm)
    if turns is not None:
        for turn in turns:
            _print_turn(session.ask(turn), fmt)
        return
    err.print("[dim]skylens chat: ask about the image; an empty line or Ctrl-D ends.[/]")
    while True:
        try:
            turn = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not turn:
            break
        try:
            _print_turn(session.ask(turn), fmt)
        except SkylensError as exc:  # one bad turn does not end the conversation
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
