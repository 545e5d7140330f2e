"""Semantic localization: where in a large scene a phrase applies (``skylens localize``).

A sliding window (``tile`` px, every ``stride`` px) runs over the scene through windowed reads,
so a 20,000 x 20,000 GeoTIFF costs its chips, never the whole image in memory. Each chip is
embedded through the shared batched path (``skylens.index.embed.embed_stream``: reads on a
reader thread, full batches through the model) and scored by its cosine similarity to the phrase's
embedding, the retrieval-as-localization approach of GeoRSCLIP's semantic localization task
(Zhang et al., "RS5M and GeoRSCLIP", 2023). Scores are also given relative to the scene mean
(``score - mean``), which removes the phrase's overall bias and makes heatmaps comparable.

The best regions are chosen greedily, highest score first, skipping windows that overlap an
already chosen one (non-maximum suppression), and returned as GeoJSON Polygons in EPSG:4326
(RFC 7946) with their scores. Single scale only: run twice with another ``tile`` for a
multi-scale view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import InputError
from skylens.imagery import (
    NoValidPixelsError,
    parse_bands,
    read_chip,
    read_raster,
    window_geometry,
    window_starts,
)
from skylens.imagery import tile as tile_scene
from skylens.index.embed import embed_stream
from skylens.models.base import ImageTextEncoder, l2_normalize
from skylens.tasks.change import as_encoder as _as_encoder
from skylens.tasks.change import check_tile as _check_tile
from skylens.tasks.change import heatmap_image

MIN_VALID = 0.5  # chips with less valid (non-nodata) pixels are skipped
MAX_PHRASE_CHARS = 1000  # as a search text: a phrase, not a document


def check_phrase(phrase: str | None) -> str:
    """The stripped phrase; ``InputError`` when empty or longer than ``MAX_PHRASE_CHARS``."""
    text = (phrase or "").strip()
    if not text:
        raise InputError("the phrase is empty; say what to look for, e.g. 'an airport'")
    if len(text) > MAX_PHRASE_CHARS:
        raise InputError(f"the phrase is {len(text)} characters; the limit is {MAX_PHRASE_CHARS}")
    return text


@dataclass
class LocalizedRegion:
    """One of the best windows for the phrase.

    Attributes:
        rank: 1 = best.
        window: (col_off, row_off, width, height) in pixels.
        cell: (grid_row, grid_col) in the heatmap.
        score: cosine similarity of chip and phrase embeddings (-1..1).
        relative: ``score`` minus the mean score of the scene's chips.
        bounds: (minx, miny, maxx, maxy) in the scene CRS, or None.
        geometry: GeoJSON Polygon (EPSG:4326), or None without georeferencing.
    """

    rank: int
    window: tuple[int, int, int, int]
    cell: tuple[int, int]
    score: float
    relative: float
    bounds: tuple[float, float, float, float] | None
    geometry: dict | None

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "window": list(self.window),
            "cell": list(self.cell),
            "score": round(self.score, 5),
            "relative": round(self.relative, 5),
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "geometry": self.geometry,
        }


@dataclass
class LocalizeResult:
    """Heatmap and best regions of a phrase in a scene.

    Attributes:
        scene: the raster.
        phrase: what was looked for.
        crs: the scene CRS or None.
        tile, stride: window side and step in pixels.
        heatmap: (rows, cols) float32 cosine scores at chip-grid resolution, NaN where skipped.
        row_starts, col_starts: pixel offsets of the grid rows and columns.
        mean_score: mean of the valid scores.
        regions: the best windows, best first.
        chips_scored, chips_skipped_nodata: chip counts.
        warnings: things the user must know.
    """

    scene: str
    phrase: str
    crs: str | None
    tile: int
    stride: int
    heatmap: np.ndarray
    row_starts: list[int]
    col_starts: list[int]
    mean_score: float
    regions: list[LocalizedRegion]
    chips_scored: int
    chips_skipped_nodata: int
    image_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, *, heatmap: bool = True) -> dict:
        """JSON-ready dict; ``heatmap=False`` leaves out the (possibly large) grid."""
        d = {
            "scene": self.scene,
            "phrase": self.phrase,
            "crs": self.crs,
            "tile": self.tile,
            "stride": self.stride,
            "grid_shape": list(self.heatmap.shape),
            "mean_score": round(self.mean_score, 5),
            "chips_scored": self.chips_scored,
            "chips_skipped_nodata": self.chips_skipped_nodata,
            "warnings": list(self.warnings),
            "regions": [r.to_dict() for r in self.regions],
        }
        if heatmap:
            d["heatmap"] = [
                [None if not np.isfinite(v) else round(float(v), 5) for v in row]
                for row in self.heatmap
            ]
        return d

    def to_geojson(self) -> dict:
        """FeatureCollection (EPSG:4326) of the best regions with rank and scores."""
        feats = []
        for r in self.regions:
            props = r.to_dict()
            props.pop("geometry")
            props["phrase"] = self.phrase
            feats.append({"type": "Feature", "geometry": r.geometry, "properties": props})
        return {
            "type": "FeatureCollection",
            "features": feats,
            "properties": {"scene": self.scene, "phrase": self.phrase},
        }

    def write_png(self, path: str | Path, *, max_side: int = 1024) -> Path:
        """Heatmap (scores min-max scaled over the scene) in red over the scene, best regions
        outlined in yellow."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.heatmap_image(max_side=max_side).save(path)
        return path

    def heatmap_image(self, *, max_side: int = 1024):
        """The heatmap overlay as a PIL image (see ``write_png``)."""
        from skylens.tasks.common import load_scene_rgb

        base = load_scene_rgb(self.scene, max_side=max_side)
        h = self.heatmap
        lo, hi = (np.nanmin(h), np.nanmax(h)) if np.isfinite(h).any() else (0.0, 1.0)
        strength = (h - lo) / max(hi - lo, 1e-6)
        windows = [[(c, r, *_size(self, c, r)) for c in self.col_starts] for r in self.row_starts]
        return heatmap_image(
            base,
            self.image_size,
            windows,
            strength,
            outlined={g.cell for g in self.regions},
        )

    def to_html(self, *, max_side: int = 512) -> str:
        """One self-contained HTML report: heatmap overlay inlined as base64 PNG, the table of
        best regions (score, window, centre lon/lat) and the warnings; no outside resources."""
        from skylens.tasks.html_report import esc, html_page, png_data_uri, warnings_html

        body = [
            f"<p class=caption>{esc(self.phrase)}: {self.chips_scored} windows of {self.tile} px "
            f"(stride {self.stride}) scored, mean score {self.mean_score:.4f}</p>"
        ]
        if self.warnings:
            body.append(warnings_html(self.warnings))
        img = png_data_uri(self.heatmap_image(max_side=max_side))
        body.append(
            f'<div class="figs"><figure><img alt="heatmap" src="{img}"><figcaption>score '
            "(red, min-max over the scene), best regions outlined</figcaption></figure></div>"
        )
        rows = []
        for r in self.regions:
            centre = ""
            if r.geometry:
                pts = r.geometry["coordinates"][0][:4]
                centre = f"{sum(p[0] for p in pts) / 4:.6f}, {sum(p[1] for p in pts) / 4:.6f}"
            rows.append(
                f"<tr><td>{r.rank}</td><td>{r.score:.4f}</td><td>{r.relative:+.4f}</td>"
                f"<td>{esc(r.window)}</td><td>{esc(centre)}</td></tr>"
            )
        body.append(
            "<table><thead><tr><th>rank</th><th>score</th><th>relative</th>"
            "<th>window (col, row, w, h)</th><th>centre lon, lat</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
        return html_page(f"Localize '{self.phrase}' in {Path(self.scene).name}", "".join(body))


def _size(res: LocalizeResult, col: int, row: int) -> tuple[int, int]:
    return min(res.tile, res.image_size[0]), min(res.tile, res.image_size[1])


def localize(
    scene_path: str | Path,
    phrase: str,
    model: ImageTextEncoder | str,
    *,
    tile: int = 64,
    stride: int = 32,
    top: int = 5,
    bands: str | Sequence[int] | None = None,
) -> LocalizeResult:
    """Score every window of a scene against a phrase and return a heatmap and the best regions.

    Args:
        scene_path: the raster (read by window only).
        phrase: what to find ("an airport", "red").
        model: an ``ImageTextEncoder`` or a model name.
        tile: window side in pixels.
        stride: step between windows in pixels, 1..tile.
        top: how many best regions to return (non-overlapping).
        bands: bands to render as R, G, B (``parse_bands``).

    Raises:
        InputError: empty phrase, tile larger than the scene, bad stride or top.
        BandError, ImageReadError: bad bands or an unreadable raster.
    """
    text = check_phrase(phrase)
    if (
        isinstance(stride, bool)
        or not isinstance(stride, (int, np.integer))
        or not 0 < stride <= tile
    ):
        raise InputError(f"stride must be in 1..{tile} pixels (the tile), got {stride!r}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InputError(f"top must be a positive number of regions, got {top!r}")
    encoder = _as_encoder(model)
    query = l2_normalize(encoder.encode_texts([text]))[0]
    with read_raster(scene_path) as raster:
        _check_tile(raster, tile, "tile")
        band_list = parse_bands(bands, raster.count, raster.path, raster.band_names)
        row_starts = window_starts(raster.height, tile, stride)
        col_starts = window_starts(raster.width, tile, stride)
        row_ix = {v: i for i, v in enumerate(row_starts)}
        col_ix = {v: i for i, v in enumerate(col_starts)}
        heat = np.full((len(row_starts), len(col_starts)), np.nan, np.float32)
        skipped = 0

        def windows():  # runs on the reader thread of embed_stream
            nonlocal skipped
            for chip in tile_scene(raster, tile, tile - stride):
                rgb, _ = read_chip(raster, chip, bands=band_list, min_valid=MIN_VALID)
                if rgb is None:
                    skipped += 1
                    continue
                yield (row_ix[chip.window[1]], col_ix[chip.window[0]]), rgb

        for batch in embed_stream(encoder, windows(), thread_name="skylens-localize-reader"):
            heat[tuple(np.array(batch.payloads).T)] = batch.vectors @ query
        valid = np.isfinite(heat)
        if not valid.any():
            raise NoValidPixelsError(
                f"{raster.path}: no window of {tile} px has {MIN_VALID:.0%} valid pixels "
                "(all NaN, nodata or masked); nothing to localize"
            )
        warnings = []
        if skipped:
            warnings.append(
                f"{skipped} of {heat.size} windows skipped: under {MIN_VALID:.0%} valid pixels"
            )
        mean = float(heat[valid].mean()) if valid.any() else float("nan")
        w, h = min(tile, raster.width), min(tile, raster.height)
        regions = []
        taken: list[tuple[int, int, int, int]] = []
        for flat in np.argsort(-np.where(valid, heat, -np.inf), axis=None):
            i, j = divmod(int(flat), heat.shape[1])
            if len(regions) >= top or not valid[i, j]:
                break
            window = (col_starts[j], row_starts[i], w, h)
            if any(_overlaps(window, t) for t in taken):
                continue
            taken.append(window)
            bounds, footprint = window_geometry(raster, window)
            regions.append(
                LocalizedRegion(
                    rank=len(regions) + 1,
                    window=window,
                    cell=(i, j),
                    score=float(heat[i, j]),
                    relative=float(heat[i, j]) - mean,
                    bounds=bounds,
                    geometry=footprint,
                )
            )
        return LocalizeResult(
            scene=raster.path,
            phrase=text,
            crs=raster.crs,
            tile=tile,
            stride=stride,
            heatmap=heat,
            row_starts=row_starts,
            col_starts=col_starts,
            mean_score=mean,
            regions=regions,
            chips_scored=int(valid.sum()),
            chips_skipped_nodata=skipped,
            image_size=(raster.width, raster.height),
            warnings=warnings,
        )


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
