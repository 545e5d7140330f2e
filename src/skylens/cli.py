"""The ``skylens`` command line: parse, call a library function, format (STYLE.md #8)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from skylens.cli_errors import err, friendly
from skylens.errors import InputError

app = typer.Typer(
    name="skylens",
    help="Talk to satellite and aerial imagery: index, search, classify — offline on a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(
    help="Train the embedded default model's small trainable parts.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(
    help="Benchmark a model on the field's datasets and compare reports.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")

out = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal and not _force_progress(),
    )


def _force_progress() -> bool:
    import os

    return os.environ.get("SKYLENS_PROGRESS") == "1"


def _check_format(fmt: str, allowed: tuple[str, ...]) -> str:
    if fmt not in allowed:
        raise InputError(f"--format must be one of {', '.join(allowed)}, got '{fmt}'")
    return fmt


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
    with _progress() as bar:
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

    fmt = _check_format(format, ("table", "json", "geojson"))
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


@app.command("classify")
@friendly
def classify_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    labels: Annotated[str | None, typer.Option(help="Class names, comma-separated.")] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="File with one class name per line.")
    ] = None,
    top: Annotated[int, typer.Option(help="Labels to show per image.")] = 3,
    model: Annotated[str, typer.Option(help="Model name.")] = "default",
    bands: Annotated[str | None, typer.Option(help="1-based bands rendered as RGB.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Zero-shot scene classification from class names."""
    from skylens.imagery import iter_image_files
    from skylens.models import load
    from skylens.tasks.classify import classify, parse_labels

    fmt = _check_format(format, ("table", "csv", "json"))
    names = parse_labels(labels, labels_file)
    enc = load(model)
    files = list(iter_image_files(images))
    with _progress() as bar:
        task = bar.add_task("classifying", total=len(files), rate="")
        results = classify(
            enc, files, names, top=top, bands=bands, progress=lambda n: bar.update(task, advance=n)
        )
    if fmt == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "rank", "label", "score", "error"])
        for r in results:
            if r.error:
                w.writerow([r.source, "", "", "", r.error])
            for rank, (lab, sc) in enumerate(zip(r.labels, r.scores, strict=True), 1):
                w.writerow([r.source, rank, lab, sc, ""])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(title=f"zero-shot over {len(names)} classes ({enc.name})")
        table.add_column("image")
        for i in range(min(top, len(names))):
            table.add_column(f"#{i + 1}")
        for r in results:
            cells = [f"{lab} ({sc:.2f})" for lab, sc in zip(r.labels, r.scores, strict=True)]
            if r.error:
                cells = [f"[red]{r.error}[/]"] + [""] * (min(top, len(names)) - 1)
            table.add_row(Path(r.source).name, *cells)
        out.print(table)
    if any(r.error for r in results):
        raise typer.Exit(1)


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
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Answer a question about an image (questions a model cannot answer are refused with the reason)."""
    from skylens.models import load
    from skylens.models.answerer import check_question
    from skylens.tasks.ask import ask_image
    from skylens.tasks.common import load_scene_rgb

    fmt = _check_format(format, ("table", "json"))
    check_question(question)
    answer = ask_image(load(model), load_scene_rgb(image, bands=bands), question)
    if fmt == "json":
        print(json.dumps(answer.to_dict(), indent=2))
    else:
        out.print(
            f"[bold]{answer.text}[/]  ({answer.kind}"
            + (f"; {answer.reason}" if answer.reason else "")
            + ")"
        )


@app.command("models")
def models_cmd() -> None:
    """List model backends and how to name them."""
    from skylens.models import available

    table = Table(title="model backends")
    for col in ("scheme", "example name", "what"):
        table.add_column(col)
    for b in available():
        table.add_row(b.scheme, b.example, b.description)
    out.print(table)


@app.command("info")
@friendly
def info_cmd(index: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Show what an index holds."""
    from skylens.index.store import ChipIndex

    print(json.dumps(ChipIndex.open(index).stats(), indent=2, default=str))


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
    with _progress() as bar:
        job = bar.add_task(f"{task} on {dataset}/{split}", total=len(ds), rate="")
        result = run(task, enc, ds, split=split, progress=lambda n: bar.update(job, advance=n))
    meta = result.pop("meta")
    if getattr(ds, "skipped", 0):
        meta["extra"]["skipped_missing"] = ds.skipped
    table = Table(title=f"{task}: {enc.name} on {dataset} ({split})")
    table.add_column("metric")
    table.add_column("value")
    for key, value in result["metrics"].items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    out.print(table)
    if out_path is not None:
        md = out_path.with_suffix(".md")
        write_report(result, out_path, md, **meta)
        out.print(f"wrote {out_path} and {md}")


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
    eval_app.command(_task)(_eval_command(_task))


@eval_app.command("compare")
@friendly
def eval_compare_cmd(
    reports: Annotated[list[Path], typer.Argument(help="JSON reports from `skylens eval`.")],
) -> None:
    """Print reports side by side."""
    from skylens.evaluate.report import compare_reports

    out.print(compare_reports(reports).to_rich())


@train_app.command("align")
@friendly
def train_align_cmd(
    data: Annotated[Path, typer.Option(help="Root of the training data (../shared/data).")] = Path(
        "../shared/data"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the heads.")] = Path(
        "src/skylens/weights"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    holdout: Annotated[
        bool, typer.Option(help="Also run the held-out-classes generalisation check.")
    ] = True,
) -> None:
    """Train skylens-lite's alignment heads on UCM-Captions train (never its test split)."""
    from skylens.train.align import AlignConfig, run
    from skylens.train.card import write_model_card

    if not (data / "ucm_captions" / "dataset.json").is_file():
        raise InputError(f"{data}: expected ucm_captions/dataset.json under the data root (--data)")
    result = run(data, out_dir, AlignConfig(seed=seed), holdout=holdout, log=lambda m: err.print(m))
    card = write_model_card(out_dir, result, command=" ".join(["skylens", *sys.argv[1:]]))
    out.print(f"wrote {out_dir / 'skylens-lite.safetensors'} and {card}")


@app.command("demo")
@friendly
def demo_cmd(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the index and the HTML report.")
    ] = Path("demo_out"),
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Imagery to index (default: deepforest's)."),
    ] = None,
    extra: Annotated[
        list[Path] | None, typer.Option("--extra", help="More folders to index if they exist.")
    ] = None,
) -> None:
    """Index the demo imagery, search it, classify it, and write an HTML report."""
    from skylens.demo import run_demo

    report = run_demo(out_dir, images=images, extra=extra or [], log=lambda m: out.print(m))
    out.print(f"[bold green]report:[/] {report.resolve()}")


from skylens.cli_caption import register as _register_caption  # noqa: E402
from skylens.cli_geo import register as _register_geo  # noqa: E402 - commands defined beside
from skylens.cli_serve import register as _register_serve  # noqa: E402
from skylens.cli_vqa import register as _register_vqa  # noqa: E402

_register_geo(app)
_register_serve(app)
_register_caption(app, train_app)
_register_vqa(app, train_app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
