"""The ``skylens`` command line: one Typer group a module, joined here (STYLE.md #14).

Every command parses, calls one library function and formats (STYLE.md #8); shared consoles,
the error handler, the progress bar and output formats live in ``skylens.cli.common``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from skylens.cli import chat, curate, demo, evaluate, geo, images, index, kb, models, serve, train


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"skylens {version('skylens')}")
        raise typer.Exit()


app = typer.Typer(
    name="skylens",
    help="Talk to satellite and aerial imagery: index, search, classify — offline on a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Talk to satellite and aerial imagery: index, search, classify — offline on a CPU."""


# top-level commands, grouped by module
for _group in (index, images, geo, models, serve, demo, chat):
    app.add_typer(_group.app)
# command groups
app.add_typer(train.app, name="train")
app.add_typer(evaluate.app, name="eval")
app.add_typer(curate.app, name="curate")
app.add_typer(kb.app, name="kb")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
