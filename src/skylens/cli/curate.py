"""``skylens curate``: build image-text and instruction datasets (the data engine).

Each command parses, calls one ``skylens.curate`` function and prints what it wrote: the new
dataset's folder, its record count and what the step removed and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli.common import OutputFormat, check_format, emit_json, escape, friendly, out

app = typer.Typer(
    help="Build training datasets: from folders, captions, boxes, OSM, shards; dedupe, filter, "
    "instruct, export, stats.",
    no_args_is_help=True,
)

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


def _runner(ray: bool, address: str | None, workers: int | None):
    from skylens.curate.pipeline import Runner

    return Runner.from_options(ray, address, workers)


def _report(ds, fmt: OutputFormat) -> None:
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


@app.command("from-folders")
@friendly
def from_folders_cmd(
    root: Annotated[
        Path, typer.Argument(help="Class-folder set: <class>/<image> or a registered layout.")
    ],
    out_: Out,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Registered scene dataset (nwpu_resisc45, eurosat, ...)."),
    ] = None,
    captions: Annotated[int, typer.Option(help="Template captions per image.")] = 3,
    skip_bad: Annotated[
        bool, typer.Option(help="Log unreadable images instead of failing.")
    ] = False,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Class folders -> records with captions from written class descriptions (RS5M)."""
    from skylens.curate.from_folders import from_folders

    ds = from_folders(root, out_, name=name, captions_per_image=captions, skip_bad=skip_bad,
                      runner=_runner(ray, ray_address, workers))  # fmt: skip
    _report(ds, fmt)


@app.command("from-captions")
@friendly
def from_captions_cmd(
    root: Annotated[
        Path, typer.Argument(help="Caption set folder (Karpathy dataset*.json or *_precomp).")
    ],
    out_: Out,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Registered caption set (ucm_captions, rsicd, ...)."),
    ] = None,
    annotation_file: Annotated[
        Path | None, typer.Option(help="An explicit Karpathy-style JSON.")
    ] = None,
    image_dir: Annotated[
        Path | None, typer.Option(help="Where the images are (default: under ROOT).")
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="Log unreadable images instead of failing.")
    ] = False,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Image-caption annotations -> records with the published sentences and splits."""
    from skylens.curate.from_captions import from_captions

    ds = from_captions(
        root,
        out_,
        name=name,
        annotation_file=annotation_file,
        image_dir=image_dir,
        skip_bad=skip_bad,
        runner=_runner(ray, ray_address, workers),
    )
    _report(ds, fmt)


@app.command("from-detections")
@friendly
def from_detections_cmd(
    root: Annotated[
        Path, typer.Argument(help="Box-annotated set (DOTA images/+labelTxt/, or COCO JSON).")
    ],
    out_: Out,
    name: Annotated[str, typer.Option("--name", help="dota or coco_boxes.")] = "dota",
    max_crops: Annotated[int, typer.Option(help="Region crops per class and image.")] = 20,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Boxes -> count/presence captions, count/presence/location QA, object region crops."""
    from skylens.curate.from_detections import from_detections

    _report(
        from_detections(
            root, out_, name=name, max_crops=max_crops, runner=_runner(ray, ray_address, workers)
        ),
        fmt,
    )


@app.command("from-vqa")
@friendly
def from_vqa_cmd(
    root: Annotated[Path, typer.Argument(help="VQA set folder (RSIVQA *.txt, RSVQA JSON).")],
    out_: Out,
    name: Annotated[str, typer.Option("--name", help="rsivqa, rsvqa_lr or rsvqa_hr.")] = "rsivqa",
    image_dir: Annotated[Path | None, typer.Option(help="Where the images are.")] = None,
    image_splits: Annotated[
        Path | None, typer.Option(help="Karpathy dataset.json fixing each image's split.")
    ] = None,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Question-answer annotations -> one record per image with its QA pairs."""
    from skylens.curate.from_vqa import from_vqa

    extra = {
        k: v for k, v in (("image_dir", image_dir), ("image_splits", image_splits)) if v is not None
    }
    _report(
        from_vqa(root, out_, name=name, runner=_runner(ray, ray_address, workers), **extra), fmt
    )


@app.command("from-osm")
@friendly
def from_osm_cmd(
    raster: Annotated[Path, typer.Argument(help="Georeferenced raster (GeoTIFF with a CRS).")],
    features: Annotated[Path, typer.Argument(help="OSM features: .osm.pbf, GeoJSON, GeoPackage.")],
    out_: Out,
    chip_size: Annotated[int, typer.Option(help="Chip side in pixels.")] = 256,
    min_cover: Annotated[
        float, typer.Option(help="Smallest share (0..1) of a chip an area must cover.")
    ] = 0.05,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """Raster chips captioned from the OpenStreetMap tags that intersect them (SkyScript)."""
    from skylens.curate.from_osm import from_osm

    _report(from_osm(raster, features, out_, chip_size=chip_size, min_cover=min_cover), fmt)


@app.command("from-webdataset")
@friendly
def from_webdataset_cmd(
    inputs: Annotated[
        list[Path], typer.Argument(help="Tar shards / Parquet files or folders of them.")
    ],
    out_: Out,
    source: Annotated[str, typer.Option(help="Source name when a sample does not say.")] = "web",
    skip_bad: Annotated[
        bool, typer.Option(help="Log undecodable images instead of failing.")
    ] = False,
    ray: Ray = False,
    ray_address: RayAddress = None,
    workers: Workers = None,
    fmt: Fmt = OutputFormat.table,
) -> None:
    """img2dataset / RS5M / GAIA style shards (tar or Parquet) -> records."""
    from skylens.curate.from_webdataset import from_webdataset

    _report(
        from_webdataset(
            inputs,
            out_,
            source=source,
            skip_bad=skip_bad,
            runner=_runner(ray, ray_address, workers),
        ),
        fmt,
    )


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

    _report(merge(datasets, out_, by_digest=by_digest), fmt)


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
                runner=_runner(ray, ray_address, workers))  # fmt: skip
    _report(ds, fmt)


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
                        runner=_runner(ray, ray_address, workers))  # fmt: skip
    _report(ds, fmt)


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

    _report(
        instruct(dataset, out_, max_qa=max_qa, llm=llm, runner=_runner(ray, ray_address, workers)),
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
