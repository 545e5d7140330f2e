"""``skylens index``, ``search`` and ``info``: build an archive index and query it."""

from __future__ import annotations

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
from skylens.errors import InputError

app = typer.Typer()

MAX_QUERIES = 100_000  # lines in a --queries file


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
    ray: Annotated[
        bool, typer.Option("--ray", help="Run on Ray Data (a local Ray unless --ray-address).")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="Ray cluster address (implies --ray), e.g. ray://head:10001."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray embedding workers (default: every CPU).")
    ] = None,
) -> None:
    """Tile and embed imagery into an index; safe to re-run or resume (no duplicates).

    With --caption, chips get captions that `skylens search --match-captions` matches; chips
    already indexed without a caption get one on a re-run.
    """
    from skylens.tasks.index import index_images

    with progress(unit="chips") as bar:
        task = bar.add_task("embedding chips", total=None, rate="")
        report = index_images(
            paths, index, model=model, tile=tile, overlap=overlap, bands=bands, batch=batch,
            ann=ann, caption=caption, caption_model=caption_model,
            runner="ray" if ray or ray_address else "local", workers=workers, address=ray_address,
            on_total=lambda n: bar.update(task, total=n),
            progress=lambda n: bar.update(task, advance=n),
        )  # fmt: skip
    rate = f" ({report.chips_per_s:.1f} chips/s)" if report.chips_per_s else ""
    failed = f", {len(report.failed)} failed" if report.failed else ""
    out.print(
        f"indexed {report.files_indexed} of {report.files_found} file(s){failed}: "
        f"{report.chips_added} chips added, {report.chips_present} already present, "
        f"{report.chips_nodata} all-nodata skipped; {report.chips_embedded} chips through the "
        f"model in {report.seconds:.1f} s{rate}; index {user_text(index)} holds {report.rows} chips",
        highlight=False,
    )
    if report.caption_model is not None:
        out.print(
            f"captioned {report.chips_captioned} chip(s) with {user_text(report.caption_model)}",
            highlight=False,
        )
    if report.caption_error:
        warn("warning", f"{report.caption_failures} chip(s) stored without caption: "
             f"{report.caption_error}")  # fmt: skip
    for f in report.failed:
        warn("skipped", f["error"])
    if report.failed:
        raise typer.Exit(1)


def _read_queries(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file (``--queries``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; --queries wants a text file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; --queries wants one query a line") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    queries = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not queries:
        raise InputError(f"{path}: holds no query (one query a line)")
    if len(queries) > MAX_QUERIES:
        raise InputError(f"{path}: {len(queries)} queries; the limit is {MAX_QUERIES}")
    return queries


@app.command("search")
@friendly
def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder made by `skylens index`.")],
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Search by an example image instead.")
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="Answer every line of this file (one model load); JSON lines out, one a query.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Number of hits.")] = 10,
    bbox: Annotated[str | None, typer.Option(help="W,S,E,N in degrees (EPSG:4326).")] = None,
    after: Annotated[str | None, typer.Option(help="Acquired on or after (ISO date).")] = None,
    before: Annotated[str | None, typer.Option(help="Acquired on or before (ISO date).")] = None,
    source: Annotated[
        str | None, typer.Option(help="Only chips whose path starts with this.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (defaults to the index's).")] = None,
    fmt: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="table, json, geojson or jsonl (one hit a line)."),
    ] = OutputFormat.table,
    match_captions: Annotated[
        bool,
        typer.Option(
            "--match-captions",
            help="Also match TEXT against stored captions (hybrid; needs `index --caption`).",
        ),
    ] = False,
) -> None:
    """Find chips by text, by example image, or for every line of a --queries file."""
    from skylens.tasks.search import (
        SearchFilters,
        open_index,
        search_image,
        search_text,
        search_texts,
    )

    if sum(x is not None for x in (text, image, queries)) != 1:
        raise InputError("give one of TEXT, --image FILE or --queries FILE")
    if match_captions and text is None:
        raise InputError("--match-captions needs TEXT (captions are matched by words)")
    if queries is not None and fmt is OutputFormat.table:
        fmt = OutputFormat.jsonl  # the only format that holds many answers
    fmt = check_format(fmt, ("jsonl",) if queries else ("table", "json", "geojson", "jsonl"))
    lines = _read_queries(queries) if queries is not None else []
    filters = SearchFilters.parse(bbox, after, before, source)
    idx = open_index(index)
    if queries is not None:
        results = search_texts(idx, lines, model=model, k=k, filters=filters)
    elif image is not None:
        results = [search_image(idx, image, model=model, k=k, filters=filters)]
    else:
        results = [search_text(idx, text, model=model, k=k, filters=filters,
                               match_captions=match_captions)]  # fmt: skip
    if queries is not None:
        emit_json([r.to_dict() for r in results], lines=True)
    elif fmt is OutputFormat.json:
        emit_json(results[0].to_dict())
    elif fmt is OutputFormat.geojson:
        emit_json(results[0].to_geojson())
    elif fmt is OutputFormat.jsonl:
        emit_json([h.to_dict() for h in results[0].hits], lines=True)
    else:
        _print_hits(results[0])


def _print_hits(result) -> None:
    from rich.table import Table

    table = Table(title=f"{user_text(result.query)}  ({user_text(result.model)})")
    show_captions = any(h.caption for h in result.hits)
    show_match = any(h.match is not None for h in result.hits)
    cols = (
        ("#", "score")
        + (("match",) if show_match else ())
        + ("path", "window (x,y,w,h)", "lon,lat")
    )
    for col in cols + (("caption",) if show_captions else ()):
        table.add_column(col, overflow="fold")
    for i, h in enumerate(result.hits, 1):
        centre = ""
        if h.footprint:
            ring = h.footprint["coordinates"][0][:4]
            centre = f"{sum(p[0] for p in ring) / 4:.5f},{sum(p[1] for p in ring) / 4:.5f}"
        match = [f"{h.match:.2f}" if h.match is not None else ""] if show_match else []
        cells = [str(i), f"{h.score:.3f}", *match, user_text(h.path), ",".join(map(str, h.window))]
        table.add_row(*cells, centre, *([user_text(h.caption or "")] if show_captions else []))
    out.print(table)
    if result.note:
        warn("note", result.note)


@app.command("info")
@friendly
def info_cmd(index: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Show what an index holds (JSON)."""
    from skylens.tasks.search import describe_index, open_index

    emit_json(describe_index(open_index(index)))
