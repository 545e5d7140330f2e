"""CLI commands for map-anchored tasks: ``skylens change`` and ``skylens localize``.

Thin faces (STYLE #8): parse, call ``skylens.tasks.change`` / ``skylens.tasks.localize``, format.

"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from skylens.cli.common import emit_json, friendly

app = typer.Typer()


class GeoFormat(str, Enum):
    """The formats change and localize offer (a subset of ``common.OutputFormat``)."""

    table = "table"
    json = "json"
    geojson = "geojson"
    html = "html"


@app.command("change")
@friendly
def change_command(
    before: Path = typer.Argument(..., help="Raster of the earlier date."),
    after: Path = typer.Argument(..., help="Raster of the later date (warped onto BEFORE)."),
    model: str = typer.Option("default", "--model", "-m", help="Model name."),
    tile: int = typer.Option(128, "--tile", help="Chip side in pixels."),
    bands: str = typer.Option(None, "--bands", help="Bands as R,G,B in both rasters, e.g. 3,2,1."),
    fmt: GeoFormat = typer.Option(GeoFormat.table, "--format", "-f", help="Output format."),
    ask: str = typer.Option(None, "--ask", help="A follow-up question about the change."),
    out_png: Path = typer.Option(None, "--out-png", help="Write the change map PNG here."),
    assume_aligned: bool = typer.Option(
        False, "--assume-aligned", help="Compare pixel-for-pixel when only one raster has a CRS."
    ),
    threshold: float = typer.Option(
        None, "--threshold", help="Change-score cut-off (default: calibrated)."
    ),
    llm: str = typer.Option(
        None,
        "--llm",
        help="Language model (e.g. openai:URL#MODEL, gguf:PATH) that rephrases the caption and "
        "answers open --ask questions from the evidence.",
    ),
) -> None:
    """What changed between two dates of one place: regions, areas, classes before -> after.

    --format html prints one self-contained HTML report (pictures inlined) to stdout.
    """
    from skylens.tasks.change import ChangeSession

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
    if out_png is not None:
        result.write_png(out_png)
    if fmt is GeoFormat.json:
        data = result.to_dict()
        if answer is not None:
            data["answer"] = answer.to_dict()
        emit_json(data)
    elif fmt is GeoFormat.geojson:
        data = result.to_geojson()
        if answer is not None:
            data["properties"]["answer"] = answer.to_dict()
        emit_json(data)
    elif fmt is GeoFormat.html:
        typer.echo(result.to_html(answer=answer), nl=False)
    else:
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(result.caption)
        if result.caption_model:
            typer.echo(
                f"(rephrased by {result.caption_model}; structured: {result.caption_structured})"
            )
        typer.echo(
            f"chips compared: {result.chips_compared}, skipped (nodata): "
            f"{result.chips_skipped_nodata}, threshold: {result.threshold:.4g}"
        )
        if result.regions:
            typer.echo(f"{'id':>3}  {'area':>12}  {'share':>6}  {'where':<10}  change")
            for g in result.regions:
                area = f"{g.area_m2:,.0f} m2" if g.area_m2 is not None else f"{g.pixels} px"
                typer.echo(
                    f"{g.id:>3}  {area:>12}  {100 * g.share:5.1f}%  {g.location:<10}  "
                    f"{g.class_before} -> {g.class_after}"
                )
        if answer is not None:
            typer.echo(f"Q: {answer.question}\nA: {answer.text}")
    if out_png is not None and fmt is GeoFormat.table:
        typer.echo(f"change map: {out_png}")


@app.command("localize")
@friendly
def localize_command(
    scene: Path = typer.Argument(..., help="The scene raster (read by window)."),
    phrase: str = typer.Argument(..., help="What to find, e.g. 'an airport'."),
    model: str = typer.Option("default", "--model", "-m", help="Model name."),
    tile: int = typer.Option(64, "--tile", help="Window side in pixels."),
    stride: int = typer.Option(32, "--stride", help="Step between windows in pixels."),
    top: int = typer.Option(5, "--top", help="Number of best regions."),
    bands: str = typer.Option(None, "--bands", help="Bands as R,G,B, e.g. 4,3,2."),
    fmt: GeoFormat = typer.Option(GeoFormat.table, "--format", "-f", help="Output format."),
    out_png: Path = typer.Option(None, "--out-png", help="Write the heatmap overlay PNG here."),
) -> None:
    """Where in a scene a phrase applies: heatmap and best regions with map polygons."""
    from skylens.tasks.localize import localize

    result = localize(scene, phrase, model, tile=tile, stride=stride, top=top, bands=bands)
    if out_png is not None:
        result.write_png(out_png)
    if fmt is GeoFormat.json:
        emit_json(result.to_dict())
    elif fmt is GeoFormat.geojson:
        emit_json(result.to_geojson())
    elif fmt is GeoFormat.html:
        typer.echo(result.to_html(), nl=False)
    else:
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(
            f"'{result.phrase}' in {result.scene}: {result.chips_scored} windows scored, "
            f"mean score {result.mean_score:.4f}"
        )
        typer.echo(
            f"{'rank':>4}  {'score':>7}  {'rel':>7}  window (col, row, w, h)  lon/lat centre"
        )
        for r in result.regions:
            centre = ""
            if r.geometry:
                pts = r.geometry["coordinates"][0][:4]
                lon = sum(p[0] for p in pts) / 4
                lat = sum(p[1] for p in pts) / 4
                centre = f"{lon:.6f}, {lat:.6f}"
            typer.echo(
                f"{r.rank:>4}  {r.score:7.4f}  {r.relative:+7.4f}  {str(r.window):<23}  {centre}"
            )
        if out_png is not None:
            typer.echo(f"heatmap: {out_png}")
