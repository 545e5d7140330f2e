"""``change``: compare two rasters of one place, from pixels to a mask, regions and a caption.

BEFORE and AFTER (AFTER warped onto BEFORE's grid when needed, ``inputs``) are rendered to RGB,
AFTER is linearly matched to BEFORE band by band, change evidence is the model's joint
embedding distance of overlapping ``tile`` windows (optionally fused with DCVA on the image
tower's feature grid, cells of ``cell`` px, misregistration-tolerant; ``scoring``), refined to
pixels inside superpixels and thresholded per pair (EM two-class rule or Otsu, floored at the
encoder's noise); connected changed pixels become regions (``regions``), and chips of ``tile``
pixels get a score and a changed flag (>= 10 % of their pixels changed).

Two scene-wide cases are said, not hidden: when the typical pixel score is far above the
encoder's noise (``UNIFORM_FACTOR``), the background itself changed (season, sun, sensor) and
the regions are what stands out against it (``background_changed``); when, on top of that,
more than ``MAX_CHANGED_SHARE`` of the scene passes the threshold, the scene changed as a whole
(``uniform_change``): the regions are kept, and the warning and the headline both say that
they may be the scene itself (another season or another place) rather than changes within it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from skylens.errors import InputError
from skylens.imagery import Raster, read_raster
from skylens.models.base import ImageTextEncoder, TextGenerator
from skylens.tasks.change.inputs import (
    align_after,
    as_encoder,
    check_bands,
    check_tile,
    read_scene_rgb,
)
from skylens.tasks.change.regions import (
    chip_grid,
    chip_scores,
    pixel_area_m2,
    refine_scores,
    region_classes,
    regions_from_mask,
)
from skylens.tasks.change.result import ChangeResult
from skylens.tasks.change.scoring import (
    UNIFORM_FACTOR,
    feature_distances,
    match_radiometry,
    mixture_threshold,
    pixel_scores,
    window_distances,
)
from skylens.tasks.change.words import (
    BACKGROUND_WARNING,
    UNIFORM_WARNING,
    as_text_generator,
    change_caption,
    rephrase_caption,
)

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

EVIDENCE = ("coarse-to-fine", "windows")  # kinds of change evidence (see ``change``)
MIN_VALID = 0.5  # a chip is compared only when >= this fraction of it has data at both dates
DEFAULT_TILE = 32  # chip side (px): the scoring unit of issue 15
CELLS_PER_CHIP = 4  # evidence cells per chip side: a chip's change is seen at 1/4-chip detail
DEFAULT_SHIFT = 2  # misregistration tolerated (px): typical co-registration error of VHR pairs
# median pixel score above this many times the encoder's noise (p95): the background changed.
# An unchanged pair's median sits below its noise p95 by definition.
# change is the minority of a scene: beyond half of it above the pair's threshold on a changed
# background, the scene changed as a whole (season, light, or another place)
MAX_CHANGED_SHARE = 0.5


def change(
    before_path: str | Path,
    after_path: str | Path,
    model: ImageTextEncoder | str,
    *,
    tile: int = DEFAULT_TILE,
    cell: int | None = None,
    shift: int = DEFAULT_SHIFT,
    evidence: str = "coarse-to-fine",
    bands: str | Sequence[int] | None = None,
    assume_aligned: bool = False,
    threshold: float | None = None,
    labels: Sequence[str] = LAND_COVER_LABELS,
    llm: TextGenerator | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ChangeResult:
    """Compare two rasters of one place: pixel mask, regions, chip scores and a caption.

    Args:
        before_path, after_path: the two rasters (any format ``read_raster`` opens).
        model: an ``ImageTextEncoder`` or a model name for ``skylens.load``.
        tile: chip side in pixels (the unit of ``scores`` and of the chip changed flag).
        cell: evidence cell side in pixels; default ``tile // 4`` (at least 4). Models without
            a spatial feature grid use one embedding per ``tile`` window instead.
        shift: misregistration tolerated, in pixels: the noise floor allows for it, and the
            feature grid also compares AFTER shifted by it.
        evidence: 'coarse-to-fine' (default): the model's joint embedding of overlapping
            ``tile`` windows (stride ``tile // 2``) says what changed, and the image tower's
            feature grid (DCVA cells of ``cell`` px; cell embeddings for models without one)
            keeps the pixels whose own cell changed; 'windows': the window embeddings only.
        bands: bands rendered as R, G, B in both rasters (``parse_bands``); required when the
            band counts differ.
        assume_aligned: compare pixel-for-pixel when only one raster has a CRS (the result says
            so in ``warnings``).
        threshold: pixel change-score cut-off; None sets it per pair (EM rule, noise floor).
        labels: land-cover names for the before -> after classes of regions.
        llm: a ``TextGenerator`` (or its name) that rephrases the caption from the evidence.
        progress: optional callable(done, total) called as windows are scored.

    Raises:
        GeoError: the rasters do not overlap, or one lacks a CRS without ``assume_aligned``, or
            plain images of different sizes.
        BandError: different band counts without ``bands``.
        InputError: a tile larger than the scene, bad arguments, or no pixel valid at both dates.
    """
    encoder = as_encoder(model)
    generator = as_text_generator(llm) if llm is not None else None
    if evidence not in EVIDENCE:
        raise InputError(f"evidence must be one of {', '.join(EVIDENCE)}, got {evidence!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise InputError(f"shift must be a number of pixels >= 0, got {shift!r}")
    warnings: list[str] = []
    with read_raster(before_path) as before, read_raster(after_path) as after_src:
        band_b, band_a = check_bands(before, after_src, bands)
        check_tile(before, tile, "tile")
        cell = _cell_size(tile, cell)
        after = align_after(before, after_src, assume_aligned, warnings)
        try:
            rgb_b, valid_b = read_scene_rgb(before, band_b)
            rgb_a, valid_a = read_scene_rgb(after, band_a)
        finally:
            if after is not after_src:
                after.close()
        options = dict(
            tile=tile, cell=cell, shift=shift, threshold=threshold, labels=labels, evidence=evidence
        )
        result = _compare(
            encoder,
            before,
            str(after_src.path),
            rgb_b,
            rgb_a,
            valid_b & valid_a,
            options,
            warnings,
            progress,
        )
    if generator is not None:
        rephrase_caption(result, generator)
    return result


def _cell_size(tile: int, cell: int | None) -> int:
    if cell is None:
        return max(4, tile // CELLS_PER_CHIP)
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise InputError(f"cell must be a positive number of pixels, got {cell!r}")
    return int(cell)


def _compare(
    model, before: Raster, after_path: str, rgb_b, rgb_a, valid, options, warnings, progress
):
    tile, cell = options["tile"], options["cell"]
    h, w = valid.shape
    grid = chip_grid(w, h, tile)
    chip_valid = [[valid[r : r + hh, c : c + ww].mean() for c, r, ww, hh in row] for row in grid]
    compared = int(sum(v >= MIN_VALID for row in chip_valid for v in row))
    skipped = sum(len(row) for row in grid) - compared
    if not valid.any():
        raise InputError(f"{before.path} and {after_path} have no pixel with data at both dates")
    if skipped:
        warnings.append(
            f"{skipped} of {skipped + compared} chips skipped: under {MIN_VALID:.0%} valid pixels "
            "(nodata) in one of the dates"
        )
    rgb_an = match_radiometry(rgb_a, rgb_b, valid)
    scores, mask, thr, noise, method = _score_and_mask(
        model, rgb_b, rgb_an, valid, options, progress
    )
    scene_px = int(valid.sum())
    background, uniform = _scene_wide(scores[valid], noise, method["coarse_share"], method)
    uniform = uniform and options["threshold"] is None
    if uniform:
        warnings.append(
            f"{UNIFORM_WARNING} ({100 * method['coarse_share']:.0f}% of the scene above the "
            "pair's threshold): the regions may be the scene itself rather than changes within it"
        )
    elif background and options["threshold"] is None:
        warnings.append(
            f"{BACKGROUND_WARNING} (median pixel score {method['median_over_noise']}x the encoder's noise)"
        )
    regions, mask = regions_from_mask(mask, scores, before, grid, (cell * cell) // 2, scene_px)
    _name_classes(model, regions, rgb_b, rgb_a, options["labels"], tile)
    area = pixel_area_m2(before)
    result = ChangeResult(
        before=before.path,
        after=after_path,
        crs=before.crs,
        tile=tile,
        grid_shape=(len(grid), len(grid[0])),
        scores=chip_scores(scores, valid, grid),
        windows=grid,
        threshold=thr,
        threshold_method=method,
        regions=regions,
        chips_compared=compared,
        chips_skipped_nodata=skipped,
        changed_share=sum(g.pixels for g in regions) / scene_px,
        caption="",
        warnings=warnings,
        scene_pixels=scene_px,
        scene_area_m2=None if area is None else round(scene_px * area, 2),
        image_size=(w, h),
        uniform_change=uniform,
        background_changed=background,
        mask=mask,
        valid=valid,
        transform=before.transform if before.crs is not None else None,
        cell=cell,
        evidence=" + ".join(method["evidence"]),
    )
    if area is None:
        warnings.append("BEFORE has no CRS: areas are in pixels, and regions have no map polygons")
    result.caption = result.caption_structured = change_caption(result)
    return result


def _name_classes(model, regions, rgb_b, rgb_a, labels, tile: int) -> None:
    """Set each region's zero-shot land-cover class before and after (in place)."""
    boxes = [g.bbox_px for g in regions]
    classes = region_classes(model, rgb_b, rgb_a, boxes, labels, min_side=tile)
    for g, (cb, ca) in zip(regions, classes, strict=True):
        g.class_before, g.class_after = cb, ca


def _score_and_mask(model, rgb_b, rgb_a, valid, options, progress):
    """Pixel change scores, the change mask, the threshold, the noise level and its terms.

    Coarse to fine: the window embeddings (semantic) say what changed, thresholded per pair;
    with ``evidence="coarse-to-fine"`` the feature grid (local) then keeps, inside that, the
    pixels whose own cell changed (Otsu on the grid's pixel scores, floored at its noise), so
    the mask follows the change rather than the windows around it.
    """
    tile, cell, shift = options["tile"], options["cell"], options["shift"]
    raw, noise = window_distances(model, rgb_b, rgb_a, tile, max(1, tile // 2), shift, progress)
    scores, refined = refine_scores(raw, rgb_b, rgb_a, valid, cell)
    scores = np.where(valid, scores, 0.0).astype(np.float32)
    if options["threshold"] is not None:
        thr = float(options["threshold"])
        method = {"method": "given", "value": thr, "mirror_noise_p95": round(noise, 6)}
    else:
        thr, method = mixture_threshold(scores[valid], noise)
    method["superpixels"] = refined
    method["evidence"] = ["window embeddings"]
    mask = valid & (scores > thr)
    method["coarse_share"] = round(float(mask.sum() / max(valid.sum(), 1)), 4)
    if options["evidence"] == "coarse-to-fine" and mask.any():
        grid = feature_distances(model, rgb_b, rgb_a, cell, shift)
        fine, _ = refine_scores(pixel_scores(grid, valid.shape), rgb_b, rgb_a, valid, cell)
        from skimage.filters import threshold_otsu

        fine_thr = max(float(threshold_otsu(fine[valid])), grid.noise)
        mask &= fine > fine_thr
        method["evidence"].append(grid.source)
        method["fine"] = {
            "method": "max(Otsu on feature-grid pixel scores, p95 mirror noise)",
            "cell_px": cell,
            "value": round(fine_thr, 6),
        }
    return scores, mask, thr, noise, method


def _scene_wide(values: np.ndarray, noise: float, share: float, method: dict) -> tuple[bool, bool]:
    """(background changed, most of the scene changed) from the pixel scores and the share of
    the scene above the threshold (see the module docstring)."""
    noise = max(noise, 1e-4)
    med = float(np.median(values)) if values.size else 0.0
    method["median_over_noise"] = round(med / noise, 2)
    background = med > UNIFORM_FACTOR * noise
    return bool(background), bool(background and share > MAX_CHANGED_SHARE)
