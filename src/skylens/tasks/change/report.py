"""Pictures and the HTML report of a change result.

``change_map``: the predicted change mask in red over the AFTER image with each region's
outline and number; ``heatmap_image`` blends per-window heat over a picture (shared with
``localize``); ``change_html``: one self-contained report with BEFORE and AFTER side by side
and a swipe slider between them, the mask over AFTER, the region list (area, share, place,
class before -> after) and the headline and warnings, which always agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skylens.tasks.change.result import ChangeResult
from skylens.tasks.change.words import area_text

MASK_RGB = (255, 40, 40)  # changed pixels
OUTLINE_RGB = (255, 230, 0)  # region outlines and numbers
MASK_ALPHA = 0.5


def write_heatmap_png(
    path: str | Path,
    base: np.ndarray,
    image_size: tuple[int, int],
    windows: list[list[tuple[int, int, int, int]]],
    strength: np.ndarray,
    *,
    outlined: set[tuple[int, int]] | None = None,
) -> Path:
    """Write ``heatmap_image`` to the PNG ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heatmap_image(base, image_size, windows, strength, outlined=outlined).save(path)
    return path


def heatmap_image(
    base: np.ndarray,
    image_size: tuple[int, int],
    windows: list[list[tuple[int, int, int, int]]],
    strength: np.ndarray,
    *,
    outlined: set[tuple[int, int]] | None = None,
):
    """Blend a per-chip heat (0..1, NaN = none) in red over an RGB picture -> PIL image.

    Args:
        base: HxWx3 uint8 view of the scene (may be decimated).
        image_size: (width, height) of the scene in pixels, to scale windows onto ``base``.
        windows: grid of pixel windows (rows x cols).
        strength: (rows, cols) heat values.
        outlined: grid cells drawn with a yellow outline.
    """
    from PIL import Image, ImageDraw

    h, w = base.shape[:2]
    sx, sy = w / image_size[0], h / image_size[1]
    heat = np.zeros((h, w), np.float32)
    for i, row in enumerate(windows):
        for j, (c, r, ww, hh) in enumerate(row):
            v = strength[i, j]
            if ww and np.isfinite(v):
                y0, y1 = int(r * sy), max(int(r * sy) + 1, int((r + hh) * sy))
                x0, x1 = int(c * sx), max(int(c * sx) + 1, int((c + ww) * sx))
                region = heat[y0:y1, x0:x1]
                np.maximum(region, float(np.clip(v, 0, 1)), out=region)
    alpha = (0.65 * heat)[..., None]
    red = np.array([255, 0, 0], np.float32)
    out = (base.astype(np.float32) * (1 - alpha) + red * alpha).astype(np.uint8)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    for i, j in outlined or ():
        c, r, ww, hh = windows[i][j]
        draw.rectangle(
            [c * sx, r * sy, (c + ww) * sx - 1, (r + hh) * sy - 1], outline=(255, 255, 0), width=2
        )
    return img


def _resized(image: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(image)
    if pil.size == size:
        return image
    return np.asarray(pil.resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def change_map(result: ChangeResult, *, max_side: int = 1024):
    """The predicted mask in red over AFTER, regions outlined and numbered -> PIL image.

    Args:
        result: a change result holding its pixel mask.
        max_side: longer side of the picture in pixels.
    """
    from PIL import Image, ImageDraw

    from skylens.tasks.common import load_scene_rgb

    base = load_scene_rgb(result.after, max_side=max_side)
    h, w = base.shape[:2]
    img = base.astype(np.float32)
    if result.mask is not None and result.mask.any():
        m = _resized(result.mask.astype(np.uint8) * 255, (w, h), nearest=True) > 127
        img[m] = img[m] * (1 - MASK_ALPHA) + np.array(MASK_RGB, np.float32) * MASK_ALPHA
    out = Image.fromarray(img.astype(np.uint8))
    draw = ImageDraw.Draw(out)
    sx, sy = w / max(result.image_size[0], 1), h / max(result.image_size[1], 1)
    for g in result.regions[:99]:
        c, r, bw, bh = g.bbox_px
        draw.rectangle(
            [c * sx, r * sy, (c + bw) * sx - 1, (r + bh) * sy - 1], outline=OUTLINE_RGB, width=1
        )
        draw.text((c * sx + 2, r * sy + 1), str(g.id), fill=OUTLINE_RGB)
    return out


_SLIDER_CSS = """
.swipe{position:relative;display:inline-block;max-width:100%}.swipe img{display:block;max-width:100%}
.swipe .top{position:absolute;top:0;left:0;height:100%;overflow:hidden;width:50%;
border-right:2px solid #fff}.swipe .top img{max-width:none;height:100%}
.swipe input{width:100%}
"""

_SLIDER_JS = (
    "for(const s of document.querySelectorAll('.swipe')){const t=s.querySelector('.top'),"
    "i=s.querySelector('input'),b=s.querySelector('.base');const f=()=>{t.style.width=i.value+'%';"
    "t.querySelector('img').style.width=b.clientWidth+'px'};i.addEventListener('input',f);"
    "window.addEventListener('load',f);window.addEventListener('resize',f)}"
)


def change_html(result: ChangeResult, *, answer=None, max_side: int = 512) -> str:
    """One self-contained HTML report: pictures inlined as base64 PNG, no outside resources.

    Holds BEFORE and AFTER side by side, a swipe slider between them, the predicted mask and
    regions over AFTER, the headline (the caption, rephrased and structured when a language
    model rephrased it), the warnings, the region table (area, share, place, before -> after
    class, score) and, when given, a follow-up answer.
    """
    from skylens.tasks.common import load_scene_rgb
    from skylens.tasks.html_report import esc, html_page, png_data_uri, warnings_html

    r = result
    before = png_data_uri(load_scene_rgb(r.before, max_side=max_side))
    after = png_data_uri(load_scene_rgb(r.after, max_side=max_side))
    figs = [
        ("before", before),
        ("after", after),
        (
            "predicted change (red) over after, regions numbered",
            png_data_uri(change_map(r, max_side=max_side)),
        ),
    ]
    body = [f"<p class=caption>{esc(r.caption)}</p>"]
    if r.caption_model:
        body.append(
            f"<p class=note>rephrased by {esc(r.caption_model)}; structured caption: "
            f"{esc(r.caption_structured)}</p>"
        )
    body.append(warnings_html(r.warnings))
    body.append(
        '<div class="figs">'
        + "".join(
            f'<figure><img alt="{esc(t)}" src="{uri}"><figcaption>{esc(t)}</figcaption></figure>'
            for t, uri in figs
        )
        + "</div>"
    )
    body.append(
        f'<style>{_SLIDER_CSS}</style><figure class=swipe><img class=base alt=after src="{after}">'
        f'<div class=top><img alt=before src="{before}"></div>'
        '<input type=range min=0 max=100 value=50 aria-label="swipe between before (left) and after">'
        "<figcaption>swipe: before (left of the line) | after</figcaption></figure>"
        f"<script>{_SLIDER_JS}</script>"
    )
    body.append(_region_table(r, esc))
    if answer is not None:
        body.append(
            f"<p class=qa><b>Q:</b> {esc(answer.question)}<br><b>A:</b> {esc(answer.text)}</p>"
        )
    facts = (
        f"{r.chips_compared} chips of {r.tile} px compared, {r.chips_skipped_nodata} skipped "
        f"(nodata); evidence: {r.evidence}, {r.cell} px cells; threshold {r.threshold:.4g} "
        f"({r.threshold_method.get('method', '')}); CRS {r.crs or 'none (areas in pixels)'}"
    )
    body.append(f"<p class=note>{esc(facts)}</p>")
    title = f"Change: {Path(r.before).name} -> {Path(r.after).name}"
    return html_page(title, "".join(body))


def _region_table(r: ChangeResult, esc) -> str:
    if not r.regions:
        return "<p>No changed region.</p>"
    shown = r.regions[:200]
    rows = "".join(
        f"<tr><td>{g.id}</td><td>{esc(area_text(g))}</td><td>{100 * g.share:.2f}%</td>"
        f"<td>{esc(g.location)}</td><td>{esc(g.class_before)} &rarr; {esc(g.class_after)}"
        f"</td><td>{g.score:.3f}</td></tr>"
        for g in shown
    )
    more = (
        f"<p class=note>{len(r.regions) - len(shown)} smaller regions not listed.</p>"
        if len(r.regions) > len(shown)
        else ""
    )
    return (
        "<table><thead><tr><th>region</th><th>area</th><th>share</th><th>where</th>"
        "<th>before &rarr; after</th><th>score</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}"
    )
