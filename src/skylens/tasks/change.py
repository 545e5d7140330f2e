"""Bi-temporal change analysis: where, how much and from what to what a scene changed.

Two rasters of one place (BEFORE, AFTER) are cut into the same chip grid; each chip pair gets a
change score ``1 - cos(e_before, e_after)`` from the encoder's image embeddings, the
embedding-difference idea behind CLIP-based change detection and change captioning (DeltaVLM,
SECOND-CC). AFTER is warped onto BEFORE's grid (``rasterio.vrt.WarpedVRT``) when their CRS,
resolution or extent differ, so chips compare the same ground.

Threshold (calibrated per pair, not a constant): a chip is changed when its score is above

    max(median + 3.5 * 1.4826 * MAD,  p95 of the model's own noise,  1e-4)

The first term is the modified z-score outlier rule of Iglewicz & Hoaglin (1993) over the pair's
scores (most of a scene does not change). The second is measured on unchanged pairs: the score of
each of up to ``CALIBRATION_CHIPS`` BEFORE chips against its mirror image (a dihedral transform
that keeps the content), i.e. how much the encoder moves when nothing on the ground did. The last
is float32 rounding. Pass ``threshold=`` to override.

The rule assumes most of the scene did not change. When the median chip score is itself far
above the model's noise (``UNIFORM_FACTOR`` times the mirror-pair p95), every chip changed alike
(season, illumination, another scene): the outlier rule then finds no region, and the result
says so explicitly (``uniform_change``, a warning, and the caption) instead of "no change".

Changed chips are merged into regions (4-connected on the chip grid). Each region carries a
GeoJSON MultiPolygon in EPSG:4326 (RFC 7946) made of non-overlapping rectangles that together
cover exactly the union of its chips, its area in m², its share of the compared scene, a compass
location of its centroid (rows taken as north-up) and the zero-shot land-cover class of its
chips before and after (mean chip embedding against ``model.text_classifier`` weights). A
caption is composed from that evidence only; ``ChangeSession.ask`` answers follow-up questions of
the kinds DeltaVLM's ChangeChat covers from the same evidence and cites region ids.

With a language model (a ``TextGenerator``, ``llm=``), the structured caption is rephrased by it
from the same evidence (the structured caption is kept beside it), and open follow-up questions
are answered by it from the evidence, citing regions as ``[region N]``; without one they get
"cannot answer with this model" and the reason.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from skylens.errors import BandError, GeoError, InputError, SkylensError
from skylens.imagery import Raster, parse_bands, read_chip, read_raster, tile, window_geometry
from skylens.index.embed import embed_images, embed_stream
from skylens.models.base import ImageTextEncoder, TextGenerator, l2_normalize

#: Land-cover words for the before -> after class of a region (zero-shot, prompt-ensembled).
LAND_COVER_LABELS: tuple[str, ...] = (
    "buildings",
    "dense residential area",
    "industrial area",
    "bare land",
    "construction site",
    "farmland",
    "grassland",
    "forest",
    "shrubland",
    "water",
    "river",
    "beach",
    "desert",
    "road",
    "highway",
    "parking lot",
    "airport runway",
    "sports field",
    "snow",
    "wetland",
)

MIN_VALID = 0.5  # a chip pair is compared only when both dates have >= this fraction of data
ROBUST_K = 3.5  # modified z-score cut-off (Iglewicz & Hoaglin 1993)
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution -> its standard deviation
NOISE_QUANTILE = 95.0  # percentile of the mirror-pair scores taken as the model's noise
CALIBRATION_CHIPS = 64  # BEFORE chips encoded mirrored for the noise estimate
FLOAT_FLOOR = 1e-4  # float32 rounding of unit vectors: below this two embeddings are equal
# median chip score above this many times the mirror-noise level (p95): the whole scene changed
# alike. An unchanged pair's median sits below its noise p95 by definition; on the UCM mosaics
# (bench/results/change_localize.json) the default model's noise p95 was 0.05-0.08 and truly
# changed tiles scored 0.52-1.04, so 3x the noise separates "most chips changed" from noise.
UNIFORM_FACTOR = 3.0
LLM_MAX_TOKENS = 200  # rephrased caption / open answer length cap (tokens)
UNIFORM_WARNING = (
    "the whole scene changed alike (e.g. season, illumination, or a different scene): "
    "per-chip change cannot separate regions"
)
COMPASS = (
    ("north-west", "north", "north-east"),
    ("west", "centre", "east"),
    ("south-west", "south", "south-east"),
)


@dataclass
class ChangeRegion:
    """A group of 4-connected changed chips.

    Attributes:
        id: 1-based region number, largest region first.
        chips: (grid_row, grid_col) of the chips in the region.
        windows: their pixel windows (col_off, row_off, width, height) on BEFORE's grid.
        geometry: GeoJSON MultiPolygon (EPSG:4326 lon/lat) covering the chips, or None when
            BEFORE is not georeferenced.
        area_m2: ground area in square metres, or None when BEFORE is not georeferenced.
        pixels: area in BEFORE pixels.
        share: fraction (0..1) of the compared scene.
        score: mean change score of its chips.
        location: compass word of the centroid ('north-east', 'centre', ...).
        centroid_px: (col, row) of the centroid in pixels.
        class_before, class_after: zero-shot land-cover class of the region at each date.
    """

    id: int
    chips: list[tuple[int, int]]
    windows: list[tuple[int, int, int, int]]
    geometry: dict | None
    area_m2: float | None
    pixels: int
    share: float
    score: float
    location: str
    centroid_px: tuple[float, float]
    class_before: str
    class_after: str

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["chips"] = [list(c) for c in self.chips]
        d["windows"] = [list(w) for w in self.windows]
        d["centroid_px"] = list(self.centroid_px)
        return d


@dataclass
class ChangeResult:
    """Everything ``change`` found, in plain data.

    Attributes:
        before, after: the two rasters.
        crs: CRS of the comparison grid (BEFORE's), or None.
        tile: chip side in pixels.
        grid_shape: (rows, cols) of the chip grid.
        scores: (rows, cols) float32 change scores, NaN where a chip was skipped.
        windows: (rows, cols) -> pixel window, row-major list of lists.
        threshold: the score above which a chip counts as changed.
        threshold_method: how the threshold was set ('given' or the calibration terms).
        regions: changed regions, largest first.
        chips_compared, chips_skipped_nodata: chip counts.
        changed_share: fraction (0..1) of the compared scene in changed regions.
        caption: one-sentence summary built from the regions.
        warnings: things the user must know (alignment assumed, reprojection, skipped chips).
        scene_pixels: compared pixels (on BEFORE's grid).
        scene_area_m2: their ground area, or None.
        image_size: (width, height) of BEFORE in pixels.
        uniform_change: the median chip score is far above the model's noise: the whole scene
            changed alike, so per-chip change cannot separate regions (see the warnings).
        caption_structured: the caption built from the evidence; ``caption`` is the same unless
            a language model rephrased it.
        caption_model: name of the language model that rephrased ``caption``, or None.
    """

    before: str
    after: str
    crs: str | None
    tile: int
    grid_shape: tuple[int, int]
    scores: np.ndarray
    windows: list[list[tuple[int, int, int, int]]]
    threshold: float
    threshold_method: dict
    regions: list[ChangeRegion]
    chips_compared: int
    chips_skipped_nodata: int
    changed_share: float
    caption: str
    warnings: list[str] = field(default_factory=list)
    scene_pixels: int = 0
    scene_area_m2: float | None = None
    image_size: tuple[int, int] = (0, 0)  # (width, height) of BEFORE in pixels
    uniform_change: bool = False
    caption_structured: str = ""
    caption_model: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.regions)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN scores become null)."""
        scores = [
            [None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in self.scores
        ]
        return {
            "before": self.before,
            "after": self.after,
            "crs": self.crs,
            "tile": self.tile,
            "grid_shape": list(self.grid_shape),
            "threshold": round(float(self.threshold), 6),
            "threshold_method": self.threshold_method,
            "changed": self.changed,
            "changed_share": round(self.changed_share, 6),
            "chips_compared": self.chips_compared,
            "chips_skipped_nodata": self.chips_skipped_nodata,
            "scene_pixels": self.scene_pixels,
            "scene_area_m2": self.scene_area_m2,
            "caption": self.caption,
            "caption_structured": self.caption_structured or self.caption,
            "caption_model": self.caption_model,
            "uniform_change": self.uniform_change,
            "warnings": list(self.warnings),
            "regions": [r.to_dict() for r in self.regions],
            "scores": scores,
        }

    def to_geojson(self) -> dict:
        """A GeoJSON FeatureCollection (EPSG:4326) with one Feature per changed region."""
        feats = []
        for r in self.regions:
            props = r.to_dict()
            props.pop("geometry")
            props["change"] = f"{r.class_before} -> {r.class_after}"
            feats.append({"type": "Feature", "geometry": r.geometry, "properties": props})
        return {
            "type": "FeatureCollection",
            "features": feats,
            "properties": {
                "before": self.before,
                "after": self.after,
                "caption": self.caption,
                "caption_structured": self.caption_structured or self.caption,
                "caption_model": self.caption_model,
                "threshold": self.threshold,
                "uniform_change": self.uniform_change,
                "warnings": list(self.warnings),
            },
        }

    def write_png(self, path: str | Path, *, max_side: int = 1024) -> Path:
        """Write the change map: scores as a red heatmap over BEFORE, changed chips outlined.

        Args:
            path: output PNG.
            max_side: longer side of the picture in pixels.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.change_map(max_side=max_side).save(path)
        return path

    def change_map(self, *, max_side: int = 1024):
        """The change map as a PIL image (see ``write_png``)."""
        from skylens.tasks.common import load_scene_rgb

        base = load_scene_rgb(self.before, max_side=max_side)
        finite = self.scores[np.isfinite(self.scores)]
        peak = max(2.0 * self.threshold, float(finite.max()) if finite.size else 0.0, 1e-6)
        strength = np.where(np.isfinite(self.scores), self.scores / peak, np.nan)
        changed = {c for r in self.regions for c in r.chips}
        return heatmap_image(base, self.image_size, self.windows, strength, outlined=changed)

    def to_html(self, *, answer: Answer | None = None, max_side: int = 512) -> str:
        """One self-contained HTML report: pictures inlined as base64 PNG, no outside resources.

        Holds BEFORE, AFTER and the change map, the caption (and the structured one when a
        language model rephrased it), the warnings, a table of regions (area m², share,
        place, before -> after class, score) and, when given, a follow-up answer.
        """
        from skylens.tasks.common import load_scene_rgb
        from skylens.tasks.html_report import esc, html_page, png_data_uri, warnings_html

        pictures = [
            ("before", load_scene_rgb(self.before, max_side=max_side)),
            ("after", load_scene_rgb(self.after, max_side=max_side)),
            ("change score (red), changed chips outlined", self.change_map(max_side=max_side)),
        ]
        figs = "".join(
            f'<figure><img alt="{esc(t)}" src="{png_data_uri(im)}"><figcaption>{esc(t)}'
            "</figcaption></figure>"
            for t, im in pictures
        )
        body = [f"<p class=caption>{esc(self.caption)}</p>"]
        if self.caption_model:
            body.append(
                f"<p class=note>rephrased by {esc(self.caption_model)}; structured caption: "
                f"{esc(self.caption_structured)}</p>"
            )
        if self.warnings:
            body.append(warnings_html(self.warnings))
        body.append(f'<div class="figs">{figs}</div>')
        rows = "".join(
            f"<tr><td>{g.id}</td><td>{esc(_area_m2_text(g))}</td><td>{100 * g.share:.1f}%</td>"
            f"<td>{esc(g.location)}</td><td>{esc(g.class_before)} &rarr; {esc(g.class_after)}"
            f"</td><td>{g.score:.3f}</td><td>{len(g.chips)}</td></tr>"
            for g in self.regions
        )
        if self.regions:
            body.append(
                "<table><thead><tr><th>region</th><th>area</th><th>share</th><th>where</th>"
                "<th>before &rarr; after</th><th>score</th><th>chips</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
            )
        else:
            body.append("<p>No changed region.</p>")
        if answer is not None:
            body.append(
                f"<p class=qa><b>Q:</b> {esc(answer.question)}<br><b>A:</b> {esc(answer.text)}</p>"
            )
        facts = (
            f"{self.chips_compared} chips of {self.tile} px compared, "
            f"{self.chips_skipped_nodata} skipped (nodata); threshold {self.threshold:.4g} "
            f"({self.threshold_method.get('method', '')}); CRS {self.crs or 'none'}"
        )
        body.append(f"<p class=note>{esc(facts)}</p>")
        title = f"Change: {Path(self.before).name} -> {Path(self.after).name}"
        return html_page(title, "".join(body))


# -- public API ---------------------------------------------------------------------------------


def change(
    before_path: str | Path,
    after_path: str | Path,
    model: ImageTextEncoder | str,
    *,
    tile: int = 128,
    bands: str | Sequence[int] | None = None,
    assume_aligned: bool = False,
    threshold: float | None = None,
    labels: Sequence[str] = LAND_COVER_LABELS,
    llm: TextGenerator | str | None = None,
) -> ChangeResult:
    """Compare two rasters of one place chip by chip.

    Args:
        before_path, after_path: the two rasters (any format ``read_raster`` opens).
        model: an ``ImageTextEncoder`` or a model name for ``skylens.load``.
        tile: chip side in pixels (chips do not overlap; edge chips are shifted inward).
        bands: bands rendered as R, G, B in both rasters (``parse_bands``); required when the
            band counts differ.
        assume_aligned: compare pixel-for-pixel when only one raster has a CRS (the result says
            so in ``warnings``).
        threshold: change-score cut-off; None calibrates it (see the module docstring).
        labels: land-cover names for the before -> after classes of regions.
        llm: a ``TextGenerator`` (or its name for ``skylens.load``) that rephrases the caption
            from the structured evidence; ``caption_structured`` keeps the original. If it
            fails, the structured caption stays and ``warnings`` says why.

    Raises:
        GeoError: the rasters do not overlap, or one lacks a CRS without ``assume_aligned``, or
            plain images of different sizes.
        BandError: different band counts without ``bands``.
        InputError: a tile larger than the scene, or bad arguments.
    """
    encoder = _as_encoder(model)
    generator = as_text_generator(llm) if llm is not None else None
    warnings: list[str] = []
    with read_raster(before_path) as before, read_raster(after_path) as after_src:
        band_b, band_a = _check_bands(before, after_src, bands)
        _check_tile(before, tile, "tile")
        after = _align(before, after_src, assume_aligned, warnings)
        try:
            result = _compare(
                encoder, before, after, band_b, band_a, tile, threshold, labels, warnings
            )
        finally:
            if after is not after_src:
                after.close()
    if generator is not None:
        rephrase_caption(result, generator)
    return result


def as_text_generator(llm: TextGenerator | str) -> TextGenerator:
    """A ``TextGenerator`` from a model or a model name (``skylens.load``).

    Raises:
        CapabilityError: the model cannot generate text.
        ModelError: no such model.
    """
    if isinstance(llm, str):
        from skylens.models.base import load

        llm = load(llm)
    if hasattr(llm, "require"):
        llm.require(TextGenerator)
    elif not callable(getattr(llm, "generate", None)):
        raise InputError(f"llm {llm!r} has no generate(messages) method")
    return llm


_REPHRASE_SYSTEM = (
    "You write for people who look at satellite or aerial images. Rewrite the structured "
    "change-detection evidence below as one or two plain sentences. Use only facts in the "
    "evidence; keep its numbers, places and classes; add nothing; cite regions as [region N]."
)
_ANSWER_SYSTEM = (
    "You answer questions about what changed between two images of one place, using only the "
    "structured change-detection evidence given. Cite the regions your answer rests on as "
    "[region N]. If the evidence does not answer the question, say so plainly."
)


def change_evidence(result: ChangeResult) -> str:
    """The structured evidence of a result as plain text lines (the language model's input)."""
    lines = [
        f"before image: {Path(result.before).name}; after image: {Path(result.after).name}",
        f"chips compared: {result.chips_compared} of {result.tile} px "
        f"(skipped for nodata: {result.chips_skipped_nodata})",
        f"change threshold: {result.threshold:.4g} ({result.threshold_method.get('method')})",
        f"changed regions: {len(result.regions)}, {_pct(result.changed_share)} of the scene"
        + (f", {_area_total(result)}" if result.regions else ""),
    ]
    if result.scene_area_m2:
        lines.append(f"scene area: {_fmt_area(result.scene_area_m2)}")
    for g in result.regions:
        where = f"in the {g.location}"
        if g.geometry:
            where += f" ({_short_bbox(g.geometry)})"
        lines.append(
            f"[region {g.id}] {g.class_before} -> {g.class_after}, {where}, area {_area(g)}, "
            f"{_pct(g.share)} of the scene, {len(g.chips)} chips, mean change score {g.score:.3f}"
        )
    for w in result.warnings:
        lines.append(f"warning: {w}")
    lines.append(f"structured caption: {result.caption_structured or result.caption}")
    return "\n".join(lines)


def rephrase_caption(result: ChangeResult, llm: TextGenerator) -> ChangeResult:
    """Let ``llm`` rephrase ``result.caption`` from the evidence (in place; returns ``result``).

    The structured caption stays in ``caption_structured``. A failing or empty reply keeps the
    structured caption and adds a warning.
    """
    result.caption_structured = result.caption_structured or result.caption
    messages = [
        {"role": "system", "content": _REPHRASE_SYSTEM},
        {"role": "user", "content": "Evidence:\n" + change_evidence(result)},
    ]
    name = getattr(llm, "name", type(llm).__name__)
    try:
        text = str(llm.generate(messages, max_tokens=LLM_MAX_TOKENS, temperature=0.0)).strip()
    except (SkylensError, OSError) as exc:  # typed backend errors, unreachable servers
        result.warnings.append(f"language model '{name}' failed ({exc}); structured caption kept")
        return result
    if not text:
        result.warnings.append(f"language model '{name}' returned nothing; structured caption kept")
        return result
    result.caption, result.caption_model = text, name
    return result


@dataclass
class Answer:
    """A reply of ``ChangeSession.ask``.

    Attributes:
        question: what was asked.
        kind: the question kind understood ('changed', 'count', 'area', 'where', 'before',
            'after') or 'unsupported'.
        text: the answer.
        region_ids: the regions the answer rests on (open questions: those the language model
            cited as ``[region N]``, or all regions when it cited none).
        supported: False when this model cannot answer the question.
        answered_by: 'evidence' (rules over the structured result) or the language model's
            name (open questions).
    """

    question: str
    kind: str
    text: str
    region_ids: list[int]
    supported: bool = True
    answered_by: str = "evidence"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ChangeSession:
    """A pair analysed once, answering follow-up questions from the structured evidence.

    Example:
        >>> s = ChangeSession("2016.tif", "2020.tif", "default")   # doctest: +SKIP
        >>> s.ask("how many regions changed?").text                  # doctest: +SKIP
    """

    def __init__(
        self,
        before: str | Path,
        after: str | Path,
        model: ImageTextEncoder | str,
        *,
        llm: TextGenerator | str | None = None,
        **options: object,
    ) -> None:
        """Analyse the pair (``change``'s options) once.

        Args:
            llm: a ``TextGenerator`` or its name: rephrases the caption and answers open
                questions from the evidence.
        """
        self.llm = as_text_generator(llm) if llm is not None else None
        self.result = change(before, after, model, llm=self.llm, **options)

    def ask(self, question: str) -> Answer:
        """Answer a question about the change; open questions go to the language model, or
        are refused with the reason when there is none.

        Raises:
            InputError: an empty question.
        """
        q = (question or "").strip()
        if not q:
            raise InputError("the question is empty; ask e.g. 'did anything change?'")
        kind = _question_kind(q.lower())
        r = self.result
        ids = [g.id for g in r.regions]
        if kind == "unsupported":
            if self.llm is not None:
                return self._ask_llm(q)
            return Answer(
                q,
                kind,
                "cannot answer with this model: it answers whether, how many, how much, where, "
                "and what was there before / is there now; open questions need a language "
                "backend (--llm NAME) and none is configured",
                [],
                supported=False,
            )
        if r.uniform_change and not r.regions:
            return Answer(q, kind, f"No region can be singled out: {r.caption}", [])
        if not r.regions:
            text = {
                "changed": "No.",
                "count": "0 regions changed.",
                "area": "0 m² (0% of the scene) changed.",
            }.get(kind, "Nothing changed above the calibrated threshold, so there is no region.")
            return Answer(q, kind, f"{text} {r.caption}".strip(), [])
        cite = lambda g: f"[region {g.id}]"  # noqa: E731
        if kind == "changed":
            text = f"Yes: {_count(len(r.regions))} changed ({_pct(r.changed_share)} of the scene)."
        elif kind == "count":
            text = f"{_count(len(r.regions))} changed: " + ", ".join(cite(g) for g in r.regions)
        elif kind == "area":
            parts = [f"{_area(g)} {cite(g)}" for g in r.regions]
            total = _area_total(r)
            text = f"{total} changed, {_pct(r.changed_share)} of the scene: " + "; ".join(parts)
        elif kind == "where":
            text = "; ".join(
                f"in the {g.location} {cite(g)}"
                + (f" (polygon: {_short_bbox(g.geometry)})" if g.geometry else "")
                for g in r.regions
            )
        elif kind == "before":
            text = "; ".join(f"{g.class_before} {cite(g)}" for g in r.regions)
        else:  # after
            text = "; ".join(f"{g.class_after} {cite(g)}" for g in r.regions)
        return Answer(q, kind, text, ids)

    def _ask_llm(self, question: str) -> Answer:
        """An open question answered by the language model from the structured evidence."""
        r = self.result
        messages = [
            {"role": "system", "content": _ANSWER_SYSTEM},
            {
                "role": "user",
                "content": f"Evidence:\n{change_evidence(r)}\n\nQuestion: {question}",
            },
        ]
        name = getattr(self.llm, "name", type(self.llm).__name__)
        try:
            text = str(
                self.llm.generate(messages, max_tokens=LLM_MAX_TOKENS, temperature=0.0)
            ).strip()
        except (SkylensError, OSError) as exc:  # typed backend errors, unreachable servers
            return Answer(
                question,
                "open",
                f"cannot answer with this model: the language model '{name}' failed ({exc})",
                [],
                supported=False,
                answered_by=name,
            )
        known = {g.id for g in r.regions}
        cited = [
            i for i in dict.fromkeys(map(int, re.findall(r"\[region (\d+)\]", text))) if i in known
        ]
        return Answer(
            question,
            "open",
            text or "(the language model gave no answer)",
            cited or sorted(known),
            supported=bool(text),
            answered_by=name,
        )


# -- alignment ----------------------------------------------------------------------------------


def _as_encoder(model: ImageTextEncoder | str) -> ImageTextEncoder:
    if isinstance(model, str):
        from skylens.models.base import load

        model = load(model)
    if hasattr(model, "require"):
        model.require(ImageTextEncoder)
    return model


def _check_tile(raster: Raster, size: int, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise InputError(f"{name} must be a positive number of pixels, got {size!r}")
    if size > raster.width or size > raster.height:
        raise InputError(
            f"{raster.path}: {name} {size} px is larger than the scene "
            f"({raster.width} x {raster.height} px); use --{name} {min(raster.width, raster.height)} "
            "or smaller"
        )


def _check_bands(
    before: Raster, after: Raster, bands: str | Sequence[int] | None
) -> tuple[list[int], list[int]]:
    if bands is None and before.count != after.count:
        raise BandError(
            f"{before.path} has {before.count} bands but {after.path} has {after.count}; "
            "give the bands to compare explicitly (e.g. --bands 3,2,1)"
        )
    return (
        parse_bands(bands, before.count, before.path, before.band_names),
        parse_bands(bands, after.count, after.path, after.band_names),
    )


def _align(before: Raster, after: Raster, assume_aligned: bool, warnings: list[str]) -> Raster:
    """AFTER on BEFORE's pixel grid: itself when already aligned, else a warped view."""
    geo_b = before.crs is not None and before.transform is not None
    geo_a = after.crs is not None and after.transform is not None
    if geo_b != geo_a:
        has, lacks = (before, after) if geo_b else (after, before)
        if not assume_aligned:
            raise GeoError(
                f"{has.path} has a CRS but {lacks.path} has none, so they cannot be placed on "
                "one grid; georeference it, or pass --assume-aligned if the pixels already match"
            )
        warnings.append(
            f"{lacks.path} has no CRS: assumed aligned pixel-for-pixel with {has.path} "
            "(--assume-aligned); the map is only right if that holds"
        )
        if not geo_b:
            warnings.append(f"{before.path} has no CRS: regions have no map polygons or m² areas")
    if not (geo_b and geo_a):
        if (before.width, before.height) != (after.width, after.height):
            raise GeoError(
                f"{before.path} ({before.width} x {before.height} px) and {after.path} "
                f"({after.width} x {after.height} px) differ in size and are not both "
                "georeferenced; resample them to one grid first"
            )
        if not (geo_b or geo_a):
            warnings.append("neither raster has a CRS: compared pixel-for-pixel; no map polygons")
        return after
    crs_b, crs_a = CRS.from_user_input(before.crs), CRS.from_user_input(after.crs)
    bb = before.bounds
    try:
        ab = transform_bounds(crs_a, crs_b, *after.bounds, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - any PROJ failure means no common ground
        raise GeoError(
            f"{after.path}: its bounds cannot be transformed to {before.crs} ({exc})"
        ) from None
    ix = min(bb[2], ab[2]) - max(bb[0], ab[0])
    iy = min(bb[3], ab[3]) - max(bb[1], ab[1])
    if ix <= 0 or iy <= 0 or not np.isfinite([ix, iy]).all():
        raise GeoError(
            f"{before.path} and {after.path} do not overlap (bounds in {before.crs}: "
            f"{_fmt_bounds(bb)} vs {_fmt_bounds(ab)}); give two images of the same place"
        )
    same_grid = (
        crs_a == crs_b
        and after.transform.almost_equals(before.transform)
        and (after.width, after.height) == (before.width, before.height)
    )
    if same_grid:
        return after
    share = (ix * iy) / ((bb[2] - bb[0]) * (bb[3] - bb[1]))
    warnings.append(
        f"{after.path} warped onto the grid of {before.path} ({after.crs} -> {before.crs}, "
        f"bilinear); they overlap on {share:.0%} of BEFORE"
    )
    vrt = WarpedVRT(
        after.dataset,
        crs=crs_b,
        transform=before.transform,
        width=before.width,
        height=before.height,
        resampling=Resampling.bilinear,
    )
    return dataclasses.replace(
        after,
        width=before.width,
        height=before.height,
        transform=before.transform,
        crs=before.crs,
        gsd=before.gsd,
        _ds=vrt,
        _stats={},
    )


def _fmt_bounds(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


# -- comparison ---------------------------------------------------------------------------------


def _compare(
    model: ImageTextEncoder,
    before: Raster,
    after: Raster,
    band_b: list[int],
    band_a: list[int],
    size: int,
    threshold: float | None,
    labels: Sequence[str],
    warnings: list[str],
) -> ChangeResult:
    chips = list(tile(before, size, 0))
    rows = sorted({c.window[1] for c in chips})
    cols = sorted({c.window[0] for c in chips})
    row_ix = {v: i for i, v in enumerate(rows)}
    col_ix = {v: i for i, v in enumerate(cols)}
    grid = [[(0, 0, 0, 0)] * len(cols) for _ in rows]
    for chip in chips:
        grid[row_ix[chip.window[1]]][col_ix[chip.window[0]]] = chip.window
    # chips whose BEFORE image also serves the noise calibration, spread over the scene
    calib_at = set(
        np.linspace(0, len(chips) - 1, min(CALIBRATION_CHIPS, len(chips))).astype(int).tolist()
    )
    calib_imgs: list[np.ndarray] = []
    keep: list[tuple[int, int]] = []
    skipped = 0

    def pairs():  # runs on the reader thread of embed_stream: windowed reads of both dates
        nonlocal skipped
        for k, chip in enumerate(chips):
            rgb_b, _ = read_chip(before, chip, bands=band_b, min_valid=MIN_VALID)
            rgb_a = None
            if rgb_b is not None:
                rgb_a, _ = read_chip(after, chip, bands=band_a, min_valid=MIN_VALID)
            if rgb_b is None or rgb_a is None:
                skipped += 1
                continue
            slot = len(keep)
            keep.append((row_ix[chip.window[1]], col_ix[chip.window[0]]))
            if k in calib_at:
                calib_imgs.append(rgb_b)
            yield (slot, 0), rgb_b
            yield (slot, 1), rgb_a

    dim = getattr(model, "embed_dim", 1)
    emb = np.zeros((2, len(chips), dim), np.float32)
    for batch in embed_stream(model, pairs(), thread_name="skylens-change-reader"):
        slots, sides = np.array(batch.payloads, np.int64).reshape(-1, 2).T
        emb[sides, slots] = batch.vectors
    if skipped:
        warnings.append(
            f"{skipped} of {len(chips)} chips skipped: under {MIN_VALID:.0%} valid pixels "
            "(nodata) in one of the dates"
        )
    emb_b, emb_a = emb[0, : len(keep)], emb[1, : len(keep)]
    scores = np.full((len(rows), len(cols)), np.nan, np.float32)
    chip_scores = 1.0 - np.sum(emb_b * emb_a, axis=1) if keep else np.zeros(0, np.float32)
    for (gi, gj), s in zip(keep, chip_scores, strict=True):
        scores[gi, gj] = s
    if threshold is not None:
        thr = float(threshold)
        method: dict = {"method": "given", "value": thr}
    else:
        thr, method = calibrate_threshold(model, chip_scores, calib_imgs)
    uniform = False
    if threshold is None and len(chip_scores):
        med = float(np.median(chip_scores))
        noise = max(float(method.get("mirror_noise_p95") or 0.0), FLOAT_FLOOR)
        uniform = med > UNIFORM_FACTOR * noise
        method["median_over_noise"] = round(med / noise, 2)
        if uniform:
            warnings.append(
                f"{UNIFORM_WARNING} (median chip score {med:.3g} is {med / noise:.0f}x the "
                "model's noise)"
            )
    changed = np.isfinite(scores) & (scores > thr)
    image_size = (before.width, before.height)
    scene_px = _union_pixels([grid[i][j] for i, j in keep])
    pixel_area = _pixel_area_m2(before)
    regions = _regions(
        model, before, changed, scores, grid, keep, emb_b, emb_a, labels, scene_px, image_size
    )
    share = sum(g.pixels for g in regions) / scene_px if scene_px else 0.0
    result = ChangeResult(
        before=before.path,
        after=str(after.path),
        crs=before.crs,
        tile=size,
        grid_shape=(len(rows), len(cols)),
        scores=scores,
        windows=grid,
        threshold=thr,
        threshold_method=method,
        regions=regions,
        chips_compared=len(keep),
        chips_skipped_nodata=skipped,
        changed_share=share,
        caption="",
        warnings=warnings,
        scene_pixels=scene_px,
        scene_area_m2=None if pixel_area is None else round(scene_px * pixel_area, 2),
        image_size=image_size,
        uniform_change=uniform,
    )
    result.caption = result.caption_structured = change_caption(result)
    return result


def calibrate_threshold(
    model: ImageTextEncoder, scores: np.ndarray, images: Sequence[np.ndarray]
) -> tuple[float, dict]:
    """The pair's change threshold and its terms (see the module docstring).

    Args:
        model: the encoder.
        scores: change scores of the compared chips.
        images: BEFORE chips (RGB uint8); up to ``CALIBRATION_CHIPS`` of them, evenly spread,
            are compared with their mirror images to measure the encoder's noise.
    """
    robust = float("-inf")
    med = mad = float("nan")
    if len(scores):
        med = float(np.median(scores))
        mad = float(np.median(np.abs(scores - med)))
        robust = med + ROBUST_K * MAD_TO_SIGMA * mad
    noise = 0.0
    if len(images):
        pick = np.unique(
            np.linspace(0, len(images) - 1, min(CALIBRATION_CHIPS, len(images))).astype(int)
        )
        orig = [images[i] for i in pick]
        mirrored = [np.ascontiguousarray(im[:, ::-1]) for im in orig]
        sims = np.sum(embed_images(model, orig) * embed_images(model, mirrored), axis=1)
        noise = float(np.percentile(1.0 - sims, NOISE_QUANTILE))
    thr = max(robust, noise, FLOAT_FLOOR)
    method = {
        "method": "max(median + 3.5*1.4826*MAD, p95 mirror-pair noise, 1e-4)",
        "median": _r(med),
        "mad": _r(mad),
        "robust": _r(robust) if np.isfinite(robust) else None,
        "mirror_noise_p95": _r(noise),
        "value": _r(thr),
    }
    return thr, method


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


def _union_pixels(windows: Sequence[tuple[int, int, int, int]]) -> int:
    """Exact pixel count of the union of axis-aligned windows (coordinate compression)."""
    return sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in _union_rectangles(windows))


def _union_rectangles(
    windows: Sequence[tuple[int, int, int, int]],
) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (x0, y0, x1, y1) pixel rectangles covering exactly the windows' union.

    Cells of the compressed grid are merged into row runs, and equal runs of consecutive rows
    into one rectangle, so a plain block of chips comes out as one rectangle.
    """
    if not windows:
        return []
    xs = sorted({v for c, r, w, h in windows for v in (c, c + w)})
    ys = sorted({v for c, r, w, h in windows for v in (r, r + h)})
    xi = {v: i for i, v in enumerate(xs)}
    yi = {v: i for i, v in enumerate(ys)}
    cover = np.zeros((len(ys) - 1, len(xs) - 1), bool)
    for c, r, w, h in windows:
        cover[yi[r] : yi[r + h], xi[c] : xi[c + w]] = True
    open_rects: dict[tuple[int, int], int] = {}  # (x0 idx, x1 idx) -> starting row idx
    out = []
    for i in range(cover.shape[0] + 1):
        runs = set()
        if i < cover.shape[0]:
            row = np.concatenate([[False], cover[i], [False]])
            edges = np.flatnonzero(row[1:] != row[:-1])
            runs = {(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)}
        for run in list(open_rects):
            if run not in runs:
                out.append((xs[run[0]], ys[open_rects.pop(run)], xs[run[1]], ys[i]))
        for run in runs:
            open_rects.setdefault(run, i)
    return out


def _pixel_area_m2(raster: Raster) -> float | None:
    """Ground area of one pixel in m²: from the transform in a projected CRS, else GSD²."""
    if raster.transform is None or raster.crs is None:
        return None
    t = raster.transform
    crs = CRS.from_user_input(raster.crs)
    if crs.is_projected:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        return abs(t.a * t.e - t.b * t.d) * factor**2
    return raster.gsd**2 if raster.gsd else None


def _regions(
    model: ImageTextEncoder,
    raster: Raster,
    changed: np.ndarray,
    scores: np.ndarray,
    grid: list[list[tuple[int, int, int, int]]],
    keep: list[tuple[int, int]],
    emb_b: np.ndarray,
    emb_a: np.ndarray,
    labels: Sequence[str],
    scene_px: int,
    image_size: tuple[int, int],
) -> list[ChangeRegion]:
    if not changed.any():
        return []
    from scipy import ndimage

    lab, n = ndimage.label(changed)  # 4-connectivity (the default structuring element)
    row_of = {c: k for k, c in enumerate(keep)}
    weights = model.text_classifier(list(labels))
    pixel_area = _pixel_area_m2(raster)
    regions = []
    for k in range(1, n + 1):
        cells = [tuple(map(int, c)) for c in np.argwhere(lab == k)]
        windows = [grid[i][j] for i, j in cells]
        rects = _union_rectangles(windows)
        pixels = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects)
        cx = sum((x0 + x1) / 2 * (x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) / pixels
        cy = sum((y0 + y1) / 2 * (x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) / pixels
        idx = [row_of[c] for c in cells]
        mb = l2_normalize(emb_b[idx].mean(0, keepdims=True))
        ma = l2_normalize(emb_a[idx].mean(0, keepdims=True))
        regions.append(
            ChangeRegion(
                id=0,
                chips=cells,
                windows=windows,
                geometry=_multipolygon(raster, rects),
                area_m2=None if pixel_area is None else round(pixels * pixel_area, 2),
                pixels=pixels,
                share=pixels / scene_px if scene_px else 0.0,
                score=round(float(np.mean([scores[c] for c in cells])), 5),
                location=compass(cx, cy, *image_size),
                centroid_px=(round(cx, 2), round(cy, 2)),
                class_before=labels[int(np.argmax(mb @ weights.T))],
                class_after=labels[int(np.argmax(ma @ weights.T))],
            )
        )
    regions.sort(key=lambda g: (-g.pixels, -g.score))
    for i, g in enumerate(regions, 1):
        g.id = i
    return regions


def _multipolygon(raster: Raster, rects: list[tuple[int, int, int, int]]) -> dict | None:
    """GeoJSON MultiPolygon (EPSG:4326) of pixel rectangles, or None without georeferencing."""
    windows = [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects]
    geoms = [window_geometry(raster, w) for w in windows]
    polys = [fp["coordinates"] for _b, fp in geoms if fp is not None]
    if len(polys) != len(windows):
        return None
    return {"type": "MultiPolygon", "coordinates": polys}


def compass(x: float, y: float, width: int, height: int) -> str:
    """Compass word for pixel (x, y) in a north-up image: the cell of a 3 x 3 split."""
    col = min(2, max(0, int(3 * x / width))) if width else 1
    row = min(2, max(0, int(3 * y / height))) if height else 1
    return COMPASS[row][col]


# -- words --------------------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n} region" + ("" if n == 1 else "s")


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _area(g: ChangeRegion) -> str:
    if g.area_m2 is None:
        return f"{g.pixels:,} px"
    return _fmt_area(g.area_m2)


def _area_total(r: ChangeResult) -> str:
    if any(g.area_m2 is None for g in r.regions):
        return f"{sum(g.pixels for g in r.regions):,} px"
    return _fmt_area(sum(g.area_m2 for g in r.regions))


def _area_m2_text(g: ChangeRegion) -> str:
    if g.area_m2 is None:
        return f"{g.pixels:,} px"
    return f"{g.area_m2:,.0f} m²"


def _fmt_area(m2: float) -> str:
    if m2 >= 1e6:
        return f"{m2 / 1e6:.2f} km²"
    if m2 >= 1e4:
        return f"{m2 / 1e4:.1f} ha"
    return f"{m2:,.0f} m²"


def _short_bbox(geom: dict) -> str:
    pts = np.array([p for poly in geom["coordinates"] for ring in poly for p in ring])
    lo, hi = pts.min(0), pts.max(0)
    return f"lon {lo[0]:.5f}..{hi[0]:.5f}, lat {lo[1]:.5f}..{hi[1]:.5f}"


def change_caption(result: ChangeResult) -> str:
    """A one-sentence summary composed only from the result's regions."""
    if result.uniform_change and not result.regions:
        return (
            f"No region stands out: {UNIFORM_WARNING} ({result.chips_compared} chips compared, "
            f"median change score {result.threshold_method.get('median', float('nan')):.3g})."
        )
    if not result.regions:
        return (
            f"No change detected: no chip scored above the calibrated threshold "
            f"{result.threshold:.3g} ({result.chips_compared} chips compared)."
        )
    parts = []
    for g in result.regions[:5]:
        what = (
            f"{g.class_before} -> {g.class_after}"
            if g.class_before != g.class_after
            else f"{g.class_before} (changed in appearance)"
        )
        parts.append(f"{what} in the {g.location} ({_area(g)})")
    more = f"; and {len(result.regions) - 5} more" if len(result.regions) > 5 else ""
    alike = (
        " (the whole scene also changed alike, so these are only the chips that changed most)"
        if result.uniform_change
        else ""
    )
    return (
        f"{_count(len(result.regions))} changed, {_pct(result.changed_share)} of the scene: "
        + "; ".join(parts)
        + more
        + alike
        + "."
    )


_KINDS = (
    ("count", r"\bhow many\b|\bnumber of\b|\bcount\b"),
    ("area", r"\bhow (much|large|big)\b|\barea\b|\bpercent|\bshare\b|\bsize\b|\bm2\b|m²"),
    ("where", r"\bwhere\b|\blocat|\bwhich part\b|\bpolygon"),
    ("before", r"\bbefore\b|\bwas (it|there)\b|\bused to\b|\bpreviously\b|\boriginally\b"),
    ("after", r"\bnow\b|\bafter\b|\bbecome\b|\bbecame\b|\bturned into\b|\bis (it|there) now\b"),
    ("changed", r"\b(chang|differ|modif|alter)\w*"),
)


def _question_kind(q: str) -> str:
    for kind, pattern in _KINDS:
        if re.search(pattern, q):
            return kind
    return "unsupported"


# -- picture ------------------------------------------------------------------------------------


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
