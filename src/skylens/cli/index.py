"""``skylens index``, ``search`` and ``info``: build an archive index and query it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skylens.cli.common import check_format, err, friendly, out, progress
from skylens.errors import InputError

app = typer.Typer()


@app.command("index")
@friendly
def index_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Image files, GeoTIFFs or folders.")],
    index: Annotated[Path, typer.Option("--index", "-i", help="Index folder (created if absent).")],
    model: Annotated[str, typer.Option(help="Model name (see `skylens models`).")] = "default",
    tile: Annotated[int, typer.Option("--tile", help="Chip side in pixels.")] = 256,
    overlap: Annotated[int, typer.Option(help="Overlap between chips in pixels.")] = 32,
    bands: Annotated[
        str | None, typer.Option(help="1-based bands rendered as RGB, e.g. 4,3,2.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Chips per forward pass.")] = 64,
    ann: Annotated[
        bool, typer.Option(help="Build the ANN index when the table is large enough.")
    ] = True,
    caption: Annotated[
        bool,
        typer.Option(
            "--caption", help="Caption every chip (with the index model) and store the captions."
        ),
    ] = False,
    caption_model: Annotated[
        str | None,
        typer.Option(
            "--caption-model", help="Caption with this model instead (implies --caption)."
        ),
    ] = None,
) -> None:
    """Tile and embed imagery into an index; safe to re-run or resume (no duplicates).

    With --caption, chips get captions that `skylens search --match-captions` matches; chips
    already indexed without a caption get one on a re-run.
    """
    from skylens.imagery import iter_image_files
    from skylens.index.ingest import check_captioner, count_chips, ingest
    from skylens.index.store import ChipIndex
    from skylens.models import load

    enc = load(model)
    captioner = None
    if caption or caption_model:
        captioner = check_captioner(load(caption_model) if caption_model else enc)
    idx = ChipIndex.create_or_open(
        index, model_name=enc.name, model_version=enc.version, embed_dim=enc.embed_dim
    )
    files = list(iter_image_files(paths))
    total = count_chips(files, tile, overlap)
    with progress() as bar:
        task = bar.add_task("embedding chips", total=total, rate="")
        report = ingest(
            files,
            idx,
            enc,
            size=tile,
            overlap=overlap,
            bands=bands,
            batch_size=batch,
            progress=lambda n: bar.update(task, advance=n),
            captioner=captioner,
        )
    if ann:
        idx.build_ann()
    rate = report.chips_added / report.seconds if report.seconds else 0.0
    out.print(
        f"indexed {report.files} file(s): {report.chips_added} chips added, "
        f"{report.chips_skipped_existing} already present, {report.chips_skipped_nodata} all-nodata skipped "
        f"in {report.seconds:.1f} s ({rate:.1f} chips/s); index {index} holds {idx.count()} chips"
    )
    if captioner is not None:
        out.print(f"captioned {report.chips_captioned} chip(s) with {captioner.name}")
    if report.caption_error:
        err.print(
            f"[yellow]warning[/] {report.caption_failures} chip(s) stored without caption: "
            f"{report.caption_error}",
            highlight=False,
            soft_wrap=True,
        )
    for f in report.failed:
        err.print(f"[yellow]skipped[/] {f['error']}", highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


@app.command("search")
@friendly
def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder made by `skylens index`.")],
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Search by an example image instead.")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Number of hits.")] = 10,
    bbox: Annotated[str | None, typer.Option(help="W,S,E,N in degrees (EPSG:4326).")] = None,
    after: Annotated[str | None, typer.Option(help="Acquired on or after (ISO date).")] = None,
    before: Annotated[str | None, typer.Option(help="Acquired on or before (ISO date).")] = None,
    source: Annotated[
        str | None, typer.Option(help="Only chips whose path starts with this.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (defaults to the index's).")] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="table, json or geojson.")
    ] = "table",
    match_captions: Annotated[
        bool,
        typer.Option(
            "--match-captions",
            help="Also match TEXT against stored captions (hybrid; needs `index --caption`).",
        ),
    ] = False,
) -> None:
    """Find chips by text or by example image."""
    from skylens.index.store import ChipIndex
    from skylens.tasks.search import parse_bbox, parse_time_range, search_image, search_text

    fmt = check_format(format, ("table", "json", "geojson"))
    if (text is None) == (image is None):
        raise InputError("give either TEXT or --image FILE (not both)")
    idx = ChipIndex.open(index)
    window = parse_time_range(after, before)
    kw = dict(
        model=model,
        k=k,
        bbox=parse_bbox(bbox),
        time_range=window,
        source=source,
    )
    if match_captions and text is None:
        raise InputError("--match-captions needs TEXT (captions are matched by words)")
    result = (
        search_text(idx, text, match_captions=match_captions, **kw)
        if text is not None
        else search_image(idx, image, **kw)
    )
    if fmt == "json":
        print(json.dumps(result.to_dict(), indent=2, default=str))
    elif fmt == "geojson":
        print(json.dumps(result.to_geojson(), indent=2, default=str))
    else:
        table = Table(title=f"{result.query}  ({result.model})")
        show_captions = any(h.caption for h in result.hits)
        cols = ("#", "score", "path", "window (x,y,w,h)", "lon,lat")
        for col in cols + (("caption",) if show_captions else ()):
            table.add_column(col, overflow="fold")
        for i, h in enumerate(result.hits, 1):
            centre = ""
            if h.footprint:
                ring = h.footprint["coordinates"][0][:4]
                centre = f"{sum(p[0] for p in ring) / 4:.5f},{sum(p[1] for p in ring) / 4:.5f}"
            cells = [str(i), f"{h.score:.3f}", str(h.path), ",".join(map(str, h.window)), centre]
            table.add_row(*cells, *([h.caption or ""] if show_captions else []))
        out.print(table)


@app.command("info")
@friendly
def info_cmd(index: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Show what an index holds."""
    from skylens.index.store import ChipIndex

    print(json.dumps(ChipIndex.open(index).stats(), indent=2, default=str))
