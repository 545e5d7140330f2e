"""``skylens eval``: benchmark a model on the field's datasets and compare reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skylens.cli.common import friendly, out, progress, user_text

app = typer.Typer(
    help="Benchmark a model on the field's datasets and compare reports.", no_args_is_help=True
)


def _run_eval(
    task: str,
    dataset: str,
    root: Path,
    model: str,
    split: str,
    out_path: Path | None,
    skip_missing: bool,
) -> None:
    from skylens.datasets import get_dataset
    from skylens.evaluate.report import write_report
    from skylens.evaluate.runner import require, run
    from skylens.models import load

    enc = load(model)
    require(enc, task)  # refuse before reading any data
    ds = get_dataset(dataset, root, split=split, skip_missing=skip_missing)
    with progress(unit="samples") as bar:
        job = bar.add_task(user_text(f"{task} on {dataset}/{split}"), total=len(ds), rate="")
        result = run(task, enc, ds, split=split, progress=lambda n: bar.update(job, advance=n))
    meta = result.pop("meta")
    if getattr(ds, "skipped", 0):
        meta["extra"]["skipped_missing"] = ds.skipped
    table = Table(title=user_text(f"{task}: {enc.name} on {dataset} ({split})"))
    table.add_column("metric")
    table.add_column("value")
    for key, value in result["metrics"].items():
        if isinstance(value, (int, float)):
            table.add_row(
                user_text(key), f"{value:.2f}" if isinstance(value, float) else str(value)
            )
    out.print(table)
    if out_path is not None:
        md = out_path.with_suffix(".md")
        write_report(result, out_path, md, **meta)
        out.print(user_text(f"wrote {out_path} and {md}"))


def _eval_command(task: str):
    @friendly
    def command(
        dataset: Annotated[
            str, typer.Option(help="Dataset name (e.g. ucm_captions, ucm_landuse, rsicd, aid).")
        ],
        root: Annotated[Path, typer.Option(help="Dataset root in its published layout.")],
        model: Annotated[str, typer.Option(help="Model name.")] = "default",
        split: Annotated[str, typer.Option(help="Split to score.")] = "test",
        out_path: Annotated[
            Path | None, typer.Option("--out", help="Write a JSON report (and Markdown beside it).")
        ] = None,
        skip_missing: Annotated[
            bool, typer.Option(help="Skip annotated images that are missing (counted).")
        ] = False,
    ) -> None:
        _run_eval(task, dataset, root, model, split, out_path, skip_missing)

    command.__doc__ = f"Score a model on a dataset: {task}."
    return command


for _task in ("retrieval", "classify", "caption", "vqa"):
    app.command(_task)(_eval_command(_task))


@app.command("compare")
@friendly
def eval_compare_cmd(
    reports: Annotated[list[Path], typer.Argument(help="JSON reports from `skylens eval`.")],
) -> None:
    """Print reports side by side."""
    from skylens.evaluate.report import compare_reports

    out.print(compare_reports(reports).to_rich())
