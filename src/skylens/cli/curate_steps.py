"""``skylens curate`` steps over a dataset: merge, dedupe, filter, instruct, export, stats.

Joined to the ``curate`` group in ``curate.py``; each parses, calls one ``skylens.curate``
function and reports what it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import OutputFormat, check_format, emit_json, escape, friendly, out
from skylens.cli.curate_options import Fmt, Out, Ray, RayAddress, Workers, report, runner

app = typer.Typer()


@app.command("merge")
@friendly
def merge_cmd(
    datasets: Annotated[list[Path], typer.Argument(help="Curated datasets to put together.")],
    out_: Out,
    by_digest: Annotated[
        bool, typer.Option(help="Join records of the same image content into one.")
    ] = False,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Several curated datasets -> one (repeated ids dropped, or same images joined)."""
    from skylens.curate.merge import merge

    report(merge(datasets, out_, by_digest=by_digest), fmt)


@app.command("dedupe")
@friendly
def dedupe_cmd(
    dataset: Annotated[Path, typer.Argument(help="Curated dataset.")],
    out_: Out,
    against: Annotated[
        list[Path] | None,
        typer.Option("--against", help="Evaluation image folder or curated dataset (repeat)."),
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma list of exact, phash, embedding.")
    ] = "exact,phash",
    phash_distance: Annotated[
        int, typer.Option(help="Largest pHash Hamming distance (of 64 bits).")
    ] = 8,
    cosine: Annotated[
        float, typer.Option(help="Smallest embedding cosine for 'embedding'.")
    ] = 0.99,
    model: Annotated[str, typer.Option(help="Encoder for 'embedding'.")] = "default",
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Drop exact and near duplicates, within the set and against evaluation images."""
    from skylens.curate.dedupe import dedupe

    ds = dedupe(dataset, out_, against=against or [], methods=[m.strip() for m in methods.split(",") if m.strip()],
                phash_distance=phash_distance, cosine=cosine, model=model,
                runner=runner(ray, ray_address, workers))  # fmt: skip
    report(ds, fmt)


@app.command("filter")
@friendly
def filter_cmd(
    dataset: Annotated[Path, typer.Argument(help="Curated dataset.")],
    out_: Out,
    min_score: Annotated[
        float | None, typer.Option(help="Smallest image-text cosine kept (needs --model).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Encoder that scores image-text pairs.")] = None,
    min_words: Annotated[int, typer.Option(help="Shortest caption in words.")] = 2,
    max_words: Annotated[int, typer.Option(help="Longest caption in words.")] = 77,
    language: Annotated[
        str, typer.Option(help="Caption language (ISO 639-1); 'any' to skip.")
    ] = "en",
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Keep only these splits (repeat).")
    ] = None,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Keep pairs above an image-text score, captions of sane length and language."""
    from skylens.curate.filter import filter_dataset

    ds = filter_dataset(dataset, out_, model=model, min_score=min_score, min_words=min_words, max_words=max_words,
                        language=None if language == "any" else language, keep_splits=split,
                        runner=runner(ray, ray_address, workers))  # fmt: skip
    report(ds, fmt)


@app.command("instruct")
@friendly
def instruct_cmd(
    dataset: Annotated[Path, typer.Argument(help="Curated dataset.")],
    out_: Out,
    max_qa: Annotated[int, typer.Option(help="QA turns per conversation.")] = 6,
    llm: Annotated[
        str | None, typer.Option(help="Language model that rephrases (facts checked).")
    ] = None,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Multi-turn instruction data from the annotations (RS-GPT4V / SkyEyeGPT style)."""
    from skylens.curate.instruct import instruct

    report(
        instruct(dataset, out_, max_qa=max_qa, llm=llm, runner=runner(ray, ray_address, workers)),
        fmt,
    )


@app.command("export")
@friendly
def export_cmd(
    dataset: Annotated[Path, typer.Argument(help="Curated dataset.")],
    out_: Annotated[Path, typer.Option("--out", "-o", help="New output folder.")],
    to: Annotated[
        str, typer.Option("--format", "-f", help="webdataset, parquet or hf.")
    ] = "webdataset",
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 1000,
) -> None:
    """Write WebDataset tar shards (.jpg + .txt + .json), Parquet, or a Hugging Face dataset."""
    from skylens.curate.export import export

    info = export(dataset, out_, fmt=to, shard_size=shard_size)
    out.print(
        f"export {escape(info['format'])}: {info['samples']} samples -> {escape(info['out'])} ({len(info['files'])} files)"
    )


@app.command("stats")
@friendly
def stats_cmd(
    dataset: Annotated[Path, typer.Argument(help="Curated dataset.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML page with thumbnails.")
    ] = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Counts by source, class, split and text kind; caption lengths; vocabulary; removals."""
    from skylens.curate.stats import dataset_stats, stats_html

    info = stats_html(dataset, html) if html else dataset_stats(dataset)
    check_format(fmt, ("table", "json"))
    if fmt == OutputFormat.json:
        emit_json(info)
        return
    for key in (
        "records",
        "region_records",
        "objects",
        "records_with_conversations",
        "classes",
        "vocabulary",
    ):
        out.print(f"{key}: {info[key]}")
    for key in ("by_source", "by_split", "by_text_kind", "caption_words", "removed"):
        out.print(f"{key}: " + ", ".join(f"{escape(str(k))}={v}" for k, v in info[key].items()))
    if html:
        out.print(f"wrote {escape(str(html))}")
