"""Options and output shared by the ``skylens curate`` commands (``curate.py``, ``curate_steps.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import OutputFormat, check_format, emit_json, escape, out

Out = Annotated[Path, typer.Option("--out", "-o", help="New dataset folder (never overwritten).")]
Fmt = Annotated[OutputFormat, typer.Option("--format", "-f", help="table or json.")]
# where a step maps its batches: the same three options as `skylens index`
Ray = Annotated[
    bool, typer.Option("--ray", help="Run on Ray Data (a local Ray unless --ray-address).")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="Ray cluster address (implies --ray), e.g. ray://head:10001."
    ),
]
Workers = Annotated[int | None, typer.Option(help="CPUs of the local Ray (default: every core).")]


def runner(ray: bool, address: str | None, workers: int | None):
    from skylens.curate.pipeline import Runner

    return Runner.from_options(ray, address, workers)


def report(ds, fmt: OutputFormat) -> None:
    check_format(fmt, ("table", "json"))
    step = ds.manifest["steps"][-1]
    info = {"out": str(ds.path), "records": ds.count, "step": step["command"],
            "seconds": step.get("seconds"), "removed": step.get("removed", {})}  # fmt: skip
    if fmt == OutputFormat.json:
        emit_json(info)
        return
    out.print(
        f"{escape(info['step'])}: {info['records']} records -> {escape(info['out'])} ({info['seconds']} s)"
    )
    for reason, n in info["removed"].items():
        out.print(f"  removed {n}: {escape(reason)}")
