"""``skylens demo`` / ``make demo``: the main job end to end on real aerial imagery, offline.

The imagery is the set of real aerial images that the ``deepforest`` wheel ships under
``deepforest/data/``; the wheel is fetched with pip (never imported) and its images extracted.
When ``../shared/data/geotiff`` exists, its GeoTIFFs are indexed too, so the report shows
footprints on the map.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from skylens.errors import IndexMismatchError, InputError
from skylens.imagery import window_thumbnail_png
from skylens.imagery.render import png_data_url
from skylens.models.towers import cache_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
QUERIES = (
    "a dense forest canopy",
    "a road through the trees",
    "bare ground with sparse vegetation",
    "buildings and parking lots",
    "a river or a lake",
)
QUESTIONS = (
    "What is the theme of this picture?",
    "Are there trees in this picture?",
    "How many buildings are in the picture?",
)

LABELS = (
    "forest",
    "grassland",
    "road",
    "buildings",
    "water",
    "bare soil",
    "farmland",
    "parking lot",
)


def deepforest_images(dest: Path | None = None) -> Path:
    """Folder of the aerial images in the deepforest wheel (downloaded once with pip, cached)."""
    dest = dest or cache_dir() / "demo" / "deepforest"
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    wheels = cache_dir() / "demo" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("deepforest-*.whl"))
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(wheels),
            "deepforest",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob("deepforest-*.whl"))
        if proc.returncode != 0 or not found:
            raise InputError(
                "could not fetch the deepforest wheel for the demo imagery "
                f"({' '.join(cmd)} said: {proc.stderr.strip()[-300:]}); pass --images DIR instead"
            )
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[-1]) as wheel:
        for name in wheel.namelist():
            if name.startswith("deepforest/data/") and name.lower().endswith(IMAGE_SUFFIXES):
                (dest / Path(name).name).write_bytes(wheel.read(name))
    return dest


def _thumb(path: str, window: Sequence[int], size: int = 160) -> str:
    """A chip as a base64 PNG data URI."""
    return png_data_url(window_thumbnail_png(path, window, size=size))


def _footprint_svg(features: list[dict], width: int = 320, height: int = 220) -> str:
    """A plain SVG panel of footprints in lon/lat (no map tiles: works offline)."""
    rings = [f["geometry"]["coordinates"][0] for f in features if f.get("geometry")]
    if not rings:
        return "<p><em>no georeferenced hits</em></p>"
    xs = [p[0] for r in rings for p in r]
    ys = [p[1] for r in rings for p in r]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 20) / max(x1 - x0, 1e-9)
    sy = (height - 20) / max(y1 - y0, 1e-9)
    s = min(sx, sy)
    polys = []
    for i, r in enumerate(rings):
        pts = " ".join(f"{10 + (p[0] - x0) * s:.1f},{height - 10 - (p[1] - y0) * s:.1f}" for p in r)
        polys.append(
            f'<polygon points="{pts}" fill="rgba(220,60,40,{0.5 if i == 0 else 0.2})" stroke="#a22"/>'
        )
    return (
        f'<svg width="{width}" height="{height}" style="background:#eef;border:1px solid #99a">{"".join(polys)}</svg>'
        f"<div class=small>lon {x0:.4f}..{x1:.4f}, lat {y0:.4f}..{y1:.4f} (EPSG:4326)</div>"
    )


def write_report(
    path: Path,
    searches: list,
    classifications: list,
    index_stats: dict,
    described: Sequence[dict] = (),
) -> Path:
    """Self-contained HTML: hits with thumbnails, scores and footprints; classifications;
    captions and answers (``described``: dicts with image, caption, answers)."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>skylens demo</title>",
        "<style>body{font:14px system-ui;margin:2em;max-width:1100px}.grid{display:flex;flex-wrap:wrap;gap:10px}"
        ".hit{width:170px;font-size:12px}.hit img{border:1px solid #999}.small{font-size:11px;color:#555}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}</style>",
        "<h1>skylens demo</h1>",
        f"<p>Index: {index_stats.get('rows')} chips, model <code>{html.escape(str(index_stats.get('model')))}</code>.</p>",
    ]
    for result in searches:
        feats = result.to_geojson()["features"]
        parts.append(f"<h2>&ldquo;{html.escape(result.query)}&rdquo;</h2><div class=grid>")
        for h in result.hits:
            parts.append(
                f'<div class=hit><img src="{_thumb(h.path, h.window)}" alt="hit"><br>score {h.score:.3f}<br>'
                f"<span class=small>{html.escape(Path(h.path).name)} @ {','.join(map(str, h.window))}</span></div>"
            )
        parts.append("</div>" + _footprint_svg(feats))
    parts.append(
        "<h2>Zero-shot classification</h2><table><tr><th>image</th><th>top labels</th></tr>"
    )
    for c in classifications:
        labels = c.error or ", ".join(
            f"{lab} ({sc:.2f})" for lab, sc in zip(c.labels, c.scores, strict=True)
        )
        parts.append(
            f"<tr><td>{html.escape(Path(c.source).name)}</td><td>{html.escape(labels)}</td></tr>"
        )
    parts.append("</table>")
    if described:
        parts.append(
            "<h2>Captions and questions</h2><table><tr><th>image</th><th>caption</th>"
            "<th>questions</th></tr>"
        )
        for d in described:
            qa = "<br>".join(
                f"{html.escape(a['question'])} &rarr; <b>{html.escape(a['text'])}</b>"
                + (f" <span class=small>({html.escape(a['reason'])})</span>" if a["reason"] else "")
                for a in d["answers"]
            )
            parts.append(
                f"<tr><td>{html.escape(Path(d['image']).name)}</td>"
                f"<td>{html.escape(d['caption'])}</td><td>{qa}</td></tr>"
            )
        parts.append("</table>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def run_demo(
    out_dir: Path,
    *,
    images: Sequence[Path] | None = None,
    extra: Sequence[Path] = (),
    model_name: str = "default",
    log: Callable[[str], None] = print,
) -> Path:
    """Index the demo imagery, run searches and a classification, write ``out_dir/report.html``."""
    from skylens.models import load
    from skylens.tasks.classify import classify
    from skylens.tasks.search import describe_index, open_index, search_text

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = list(images) if images else [deepforest_images()]
    shared_geotiff = (
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "geotiff"
    ).resolve()
    extras = [p for p in [*extra, shared_geotiff] if p.exists()]
    log(f"loading model '{model_name}'")
    model = load(model_name)
    for src in [*sources, *extras]:
        _index_source(src, out_dir / "index", model_name, log)
    index = open_index(out_dir / "index")
    searches = []
    for q in QUERIES:
        result = search_text(index, q, model=model, k=6)
        searches.append(result)
        best = result.hits[0] if result.hits else None
        log(
            f"search '{q}': best {Path(best.path).name} score {best.score:.3f}"
            if best
            else f"search '{q}': no hits"
        )
    classifications = classify(model, sources, list(LABELS), top=3)
    for c in classifications:
        log(
            f"classify {Path(c.source).name}: "
            + (
                c.error
                or ", ".join(f"{a} {b:.2f}" for a, b in zip(c.labels, c.scores, strict=True))
            )
        )
    described = describe(model, sources, log=log)
    (out_dir / "searches.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [f for r in searches for f in r.to_geojson()["features"]],
            },
            default=str,
        )
    )
    return write_report(
        out_dir / "report.html", searches, classifications, describe_index(index), described
    )


def _index_source(src: Path, index_dir: Path, model_name: str, log: Callable[[str], None]) -> None:
    """Index one source folder (``skylens.tasks.index``); the demo owns its index folder, so an
    index built with another model is rebuilt."""
    from skylens.tasks.index import index_images

    try:
        report = index_images([src], index_dir, model=model_name, ann=False)
    except InputError as exc:  # e.g. a folder without images: the other sources still count
        log(f"skipped {src}: {exc}")
        return
    except IndexMismatchError:
        log(f"{index_dir} was built with another model; rebuilding it")
        shutil.rmtree(index_dir)
        report = index_images([src], index_dir, model=model_name, ann=False)
    log(
        f"indexed {src.resolve()}: +{report.chips_added} chips ({report.chips_present} already "
        f"there, {report.chips_nodata} all-nodata) in {report.seconds:.1f} s"
        + (f"; {len(report.failed)} file(s) unreadable" if report.failed else "")
    )


def describe(
    model, sources: Sequence[Path], *, limit: int = 8, log: Callable[[str], None] = print
) -> list[dict]:
    """Caption up to ``limit`` images of ``sources`` and ask each the demo's questions.

    Models without a captioner or answerer are skipped with a log line, not an error.
    """
    from skylens.imagery import iter_image_files
    from skylens.models import Answerer, Captioner
    from skylens.tasks.ask import ask_image
    from skylens.tasks.caption import caption_arrays
    from skylens.tasks.common import load_scene_rgb

    if not isinstance(model, Captioner):
        log(f"model '{model.name}' has no captioner: skipping captions and questions")
        return []
    files = list(iter_image_files(list(sources)))[:limit]
    images = [load_scene_rgb(f) for f in files]
    out = []
    for f, im, cap in zip(files, images, caption_arrays(model, images), strict=True):
        answers = (
            [ask_image(model, im, q) for q in QUESTIONS] if isinstance(model, Answerer) else []
        )
        out.append({"image": str(f), "caption": cap, "answers": [a.to_dict() for a in answers]})
        log(f"caption {f.name}: {cap}")
    return out
