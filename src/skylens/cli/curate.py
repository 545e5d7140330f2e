"""``skylens curate``: build image-text and instruction datasets (the data engine).

Each command parses, calls one ``skylens.curate`` function and prints what it wrote: the new
dataset's folder, its record count and what the step removed and why. The source commands
(``from-*``) live here, the steps over a dataset (merge, dedupe, filter, instruct, export,
stats) in ``curate_steps.py``; shared options in ``curate_options.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skylens.cli import curate_steps
from skylens.cli.common import OutputFormat, friendly
from skylens.cli.curate_options import Fmt, Out, Ray, RayAddress, Workers, report, runner

app = typer.Typer(
    help="Build training datasets: from folders, captions, boxes, OSM, shards; dedupe, filter, "
    "instruct, export, stats.",
    no_args_is_help=True,
)
app.add_typer(curate_steps.app)


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
                      runner=runner(ray, ray_address, workers))  # fmt: skip
    report(ds, fmt)


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
        runner=runner(ray, ray_address, workers),
    )
    report(ds, fmt)


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

    report(
        from_detections(
            root, out_, name=name, max_crops=max_crops, runner=runner(ray, ray_address, workers)
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
    report(from_vqa(root, out_, name=name, runner=runner(ray, ray_address, workers), **extra), fmt)


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

    report(from_osm(raster, features, out_, chip_size=chip_size, min_cover=min_cover), fmt)


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

    report(
        from_webdataset(
            inputs,
            out_,
            source=source,
            skip_bad=skip_bad,
            runner=runner(ray, ray_address, workers),
        ),
        fmt,
    )
