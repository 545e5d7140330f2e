"""CLI commands for map-anchored tasks: ``skylens change`` and ``skylens localize``.

Thin faces (STYLE #8): parse, call ``skylens.tasks.change`` / ``skylens.tasks.localize``, format.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import OutputFormat, check_format, emit_json, friendly, safe_text
from skylens.errors import InputError

app = typer.Typer()

FORMATS = ("table", "json", "geojson", "html")  # what change and localize offer
Format = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table, json, geojson or html.")
]
Bands = Annotated[str | None, typer.Option("--bands", help="Bands as R,G,B, e.g. 4,3,2.")]
Model = Annotated[str, typer.Option("--model", "-m", help="Model name.")]


def _echo(text: str, *, err: bool = False) -> None:
    typer.echo(safe_text(text), err=err)


def _check_out_png(path: Path | None) -> None:
    """Refuse an ``--out-png`` that cannot be written before any work is done."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{path}: is a folder; --out-png wants a file name, e.g. map.png")


@app.command("change")
@friendly
def change_command(
    before: Annotated[Path, typer.Argument(help="Raster of the earlier date.")],
    after: Annotated[Path, typer.Argument(help="Raster of the later date (warped onto BEFORE).")],
    model: Model = "default",
    tile: Annotated[int, typer.Option("--tile", min=1, help="Chip side in pixels.")] = 128,
    bands: Bands = None,
    fmt: Format = OutputFormat.table,
    ask: Annotated[
        str | None, typer.Option("--ask", help="A follow-up question about the change.")
    ] = None,
    out_png: Annotated[
        Path | None, typer.Option("--out-png", help="Write the change map PNG here.")
    ] = None,
    out_mask: Annotated[
        Path | None,
        typer.Option("--out-mask", help="Write the pixel change mask GeoTIFF (BEFORE's grid)."),
    ] = None,
    out_geojson: Annotated[
        Path | None,
        typer.Option("--out-geojson", help="Write the changed regions as GeoJSON polygons."),
    ] = None,
    assume_aligned: Annotated[
        bool,
        typer.Option(
            "--assume-aligned", help="Compare pixel-for-pixel when only one raster has a CRS."
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Change-score cut-off (default: calibrated)."),
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="Language model (e.g. openai:URL#MODEL, gguf:PATH) that rephrases the caption "
            "and answers open --ask questions from the evidence.",
        ),
    ] = None,
) -> None:
    """What changed between two dates of one place: regions, areas, classes before -> after.

    --format html prints one self-contained HTML report (pictures inlined) to stdout.
    """
    from skylens.tasks.change import ChangeSession

    fmt = check_format(fmt, FORMATS)
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite number, got {threshold}")
    _check_out_png(out_png)
    session = ChangeSession(
        before,
        after,
        model,
        llm=llm,
        tile=tile,
        bands=bands,
        assume_aligned=assume_aligned,
        threshold=threshold,
    )
    result = session.result
    answer = session.ask(ask) if ask else None
    written = _write_change_files(result, png=out_png, mask=out_mask, regions=out_geojson)
    if fmt is OutputFormat.json:
        emit_json(result.to_dict() | ({"answer": answer.to_dict()} if answer else {}))
    elif fmt is OutputFormat.geojson:
        data = result.to_geojson()
        if answer is not None:
            data["properties"]["answer"] = answer.to_dict()
        emit_json(data)
    elif fmt is OutputFormat.html:
        typer.echo(safe_text(result.to_html(answer=answer)), nl=False)
    else:
        _print_change(result, answer, out_png)
        for label, path in written.items():
            if label != "png":
                _echo(f"{label}: {path}")


def _write_change_files(result, **paths: Path | None) -> dict[str, Path]:
    """Write the change map PNG, mask GeoTIFF and regions GeoJSON that were asked for."""
    writers = {"png": result.write_png, "mask": result.write_mask, "regions": result.write_geojson}
    written = {}
    for label, path in paths.items():
        if path is not None:
            writers[label](path)
            written[label] = path
    return written


def _print_change(result, answer, out_png: Path | None) -> None:
    for w in result.warnings:
        _echo(f"warning: {w}", err=True)
    _echo(result.caption)
    if result.caption_model:
        _echo(f"(rephrased by {result.caption_model}; structured: {result.caption_structured})")
    _echo(
        f"chips compared: {result.chips_compared}, skipped (nodata): "
        f"{result.chips_skipped_nodata}, threshold: {result.threshold:.4g}"
    )
    if result.regions:
        _echo(f"{'id':>3}  {'area':>12}  {'share':>6}  {'where':<10}  change")
        for g in result.regions:
            area = f"{g.area_m2:,.0f} m2" if g.area_m2 is not None else f"{g.pixels} px"
            _echo(
                f"{g.id:>3}  {area:>12}  {100 * g.share:5.1f}%  {g.location:<10}  "
                f"{g.class_before} -> {g.class_after}"
            )
    if answer is not None:
        _echo(f"Q: {answer.question}\nA: {answer.text}")
    if out_png is not None:
        _echo(f"change map: {out_png}")


@app.command("localize")
@friendly
def localize_command(
    scene: Annotated[Path, typer.Argument(help="The scene raster (read by window).")],
    phrase: Annotated[str, typer.Argument(help="What to find, e.g. 'an airport'.")],
    model: Model = "default",
    tile: Annotated[int, typer.Option("--tile", min=1, help="Window side in pixels.")] = 64,
    stride: Annotated[
        int, typer.Option("--stride", min=1, help="Step between windows in pixels.")
    ] = 32,
    top: Annotated[int, typer.Option("--top", min=1, help="Number of best regions.")] = 5,
    bands: Bands = None,
    fmt: Format = OutputFormat.table,
    out_png: Annotated[
        Path | None, typer.Option("--out-png", help="Write the heatmap overlay PNG here.")
    ] = None,
) -> None:
    """Where in a scene a phrase applies: heatmap and best regions with map polygons."""
    from skylens.tasks.localize import localize

    fmt = check_format(fmt, FORMATS)
    _check_out_png(out_png)
    result = localize(scene, phrase, model, tile=tile, stride=stride, top=top, bands=bands)
    if out_png is not None:
        result.write_png(out_png)
    if fmt is OutputFormat.json:
        emit_json(result.to_dict())
    elif fmt is OutputFormat.geojson:
        emit_json(result.to_geojson())
    elif fmt is OutputFormat.html:
        typer.echo(safe_text(result.to_html()), nl=False)
    else:
        for w in result.warnings:
            _echo(f"warning: {w}", err=True)
        _echo(
            f"'{result.phrase}' in {result.scene}: {result.chips_scored} windows scored, "
            f"mean score {result.mean_score:.4f}"
        )
        _echo(f"{'rank':>4}  {'score':>7}  {'rel':>7}  window (col, row, w, h)  lon/lat centre")
        for r in result.regions:
            centre = ""
            if r.geometry:
                pts = r.geometry["coordinates"][0][:4]
                lon = sum(p[0] for p in pts) / 4
                lat = sum(p[1] for p in pts) / 4
                centre = f"{lon:.6f}, {lat:.6f}"
            _echo(f"{r.rank:>4}  {r.score:7.4f}  {r.relative:+7.4f}  {str(r.window):<23}  {centre}")
        if out_png is not None:
            _echo(f"heatmap: {out_png}")
