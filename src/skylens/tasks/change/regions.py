"""From pixel change scores to a mask and regions with polygons, areas and places.

* ``refine_scores``: the cell-resolution evidence (bilinearly upsampled) is averaged inside
  superpixels of the two dates stacked (SLIC, Achanta et al. 2012, ``skimage.segmentation``), so
  the mask follows edges in the images rather than the cell grid.
* ``regions_from_mask``: 8-connected components of the mask (smaller than half a cell dropped:
  below the evidence's resolution), each with its pixel polygons (``rasterio.features.shapes``)
  in EPSG:4326 (RFC 7946), its area in m² from its pixel count, its compass place and its
  zero-shot land-cover class at both dates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.crs import CRS

from skylens.imagery import Raster
from skylens.models.base import ImageTextEncoder, l2_normalize
from skylens.tasks.change.result import ChangeRegion

SLIC_MAX_PIXELS = 16_000_000  # above this the mask stays at the upsampled cell evidence
SLIC_COMPACTNESS = 10.0  # skimage's default balance of colour and space
CHIP_CHANGED = 0.10  # a chip counts as changed when >= 10 % of its pixels changed (issue 15)
COMPASS = (
    ("north-west", "north", "north-east"),
    ("west", "centre", "east"),
    ("south-west", "south", "south-east"),
)


def refine_scores(
    scores: np.ndarray, before: np.ndarray, after: np.ndarray, valid: np.ndarray, cell: int
) -> tuple[np.ndarray, bool]:
    """Pixel scores averaged within superpixels of both dates (about one per cell).

    Args:
        scores: (H, W) float32 pixel change scores (upsampled cell evidence).
        before, after: HxWx3 uint8 RGB of the two dates (AFTER radiometrically matched).
        valid: (H, W) bool, pixels with data at both dates.
        cell: the evidence's cell side in pixels (sets the superpixel size).

    Returns:
        (refined scores, whether superpixels were used: False above ``SLIC_MAX_PIXELS``).
    """
    from skimage.segmentation import slic

    h, w = scores.shape
    if h * w > SLIC_MAX_PIXELS or not valid.any():
        return scores, False
    stack = np.concatenate([before, after], axis=-1).astype(np.float32) / 255.0
    n = max(1, int(valid.sum()) // (cell * cell))
    seg = slic(
        stack,
        n_segments=n,
        compactness=SLIC_COMPACTNESS,
        channel_axis=-1,
        start_label=1,
        mask=valid,
    )
    sums = np.bincount(seg.ravel(), weights=scores.ravel().astype(np.float64))
    counts = np.maximum(np.bincount(seg.ravel()), 1)
    means = (sums / counts).astype(np.float32)
    out = means[seg]
    out[seg == 0] = scores[seg == 0]  # outside the mask SLIC labels 0: keep the raw evidence
    return out, True


def pixel_area_m2(raster: Raster) -> float | None:
    """Ground area of one pixel in m²: from the transform in a projected CRS, else GSD²."""
    if raster.transform is None or raster.crs is None:
        return None
    t = raster.transform
    crs = CRS.from_user_input(raster.crs)
    if crs.is_projected:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        return abs(t.a * t.e - t.b * t.d) * factor**2
    return raster.gsd**2 if raster.gsd else None


def compass(x: float, y: float, width: int, height: int) -> str:
    """Compass word for pixel (x, y) in a north-up image: the cell of a 3 x 3 split."""
    col = min(2, max(0, int(3 * x / width))) if width else 1
    row = min(2, max(0, int(3 * y / height))) if height else 1
    return COMPASS[row][col]


def region_polygons(raster: Raster, labels: np.ndarray) -> dict[int, dict]:
    """GeoJSON MultiPolygons (EPSG:4326) of each labelled component; {} without a CRS.

    Args:
        raster: BEFORE (its transform and CRS place the pixels).
        labels: (H, W) int32 component labels, 0 = background.
    """
    from rasterio.features import shapes
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    if raster.transform is None or raster.crs is None or not labels.any():
        return {}
    pieces: dict[int, list] = {}
    for geom, value in shapes(labels, mask=labels > 0, transform=raster.transform):
        pieces.setdefault(int(value), []).append(shape(geom))
    out = {}
    for k, polys in pieces.items():
        merged = unary_union(polys)
        geo = transform_geom(raster.crs, "EPSG:4326", mapping(merged))
        if geo["type"] == "Polygon":
            geo = {"type": "MultiPolygon", "coordinates": [geo["coordinates"]]}
        out[k] = {"type": geo["type"], "coordinates": _lists(geo["coordinates"])}
    return out


def _lists(coords):
    if isinstance(coords, (list, tuple)) and coords and isinstance(coords[0], (int, float)):
        return [float(c) for c in coords]
    return [_lists(c) for c in coords]


def region_classes(
    model: ImageTextEncoder,
    before: np.ndarray,
    after: np.ndarray,
    boxes: Sequence[tuple[int, int, int, int]],
    labels: Sequence[str],
    min_side: int,
) -> list[tuple[str, str]]:
    """Zero-shot land-cover class of each box at both dates (box grown to ``min_side`` px)."""
    if not boxes:
        return []
    h, w = before.shape[:2]
    crops_b, crops_a = [], []
    for c, r, bw, bh in boxes:
        side_w, side_h = min(w, max(bw, min_side)), min(h, max(bh, min_side))
        x0 = int(min(max(0, c + bw / 2 - side_w / 2), w - side_w))
        y0 = int(min(max(0, r + bh / 2 - side_h / 2), h - side_h))
        crops_b.append(before[y0 : y0 + side_h, x0 : x0 + side_w])
        crops_a.append(after[y0 : y0 + side_h, x0 : x0 + side_w])
    weights = model.text_classifier(list(labels))
    eb = l2_normalize(model.encode_images(crops_b))
    ea = l2_normalize(model.encode_images(crops_a))
    cb, ca = np.argmax(eb @ weights.T, axis=1), np.argmax(ea @ weights.T, axis=1)
    return [(labels[int(i)], labels[int(j)]) for i, j in zip(cb, ca, strict=True)]


def regions_from_mask(
    mask: np.ndarray,
    scores: np.ndarray,
    raster: Raster,
    grid: list[list[tuple[int, int, int, int]]],
    min_pixels: int,
    scene_px: int,
) -> tuple[list[ChangeRegion], np.ndarray]:
    """Connected changed components as regions (classes left empty), largest first.

    Args:
        mask: (H, W) bool change mask.
        scores: (H, W) pixel change scores.
        raster: BEFORE (transform, CRS, pixel area).
        grid: the chip windows, rows x cols.
        min_pixels: components smaller than this are dropped (and cleared from the mask).
        scene_px: compared pixels (for each region's share).

    Returns:
        (regions, the mask without the dropped components).
    """
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return [], mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = np.flatnonzero(sizes >= max(1, min_pixels))
    keep = keep[keep > 0]
    order = keep[np.argsort(-sizes[keep], kind="stable")]
    relabel = np.zeros(n + 1, np.int32)
    relabel[order] = np.arange(1, len(order) + 1)
    lab = relabel[lab]
    polys = region_polygons(raster, lab)
    area = pixel_area_m2(raster)
    h, w = mask.shape
    objects = ndimage.find_objects(lab)
    regions = []
    for k, sl in enumerate(objects, 1):
        if sl is None:
            continue
        ys, xs = np.nonzero(lab[sl] == k)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        chips = _chips_covered(lab == k, grid)
        regions.append(
            ChangeRegion(
                id=k,
                chips=chips,
                windows=[grid[i][j] for i, j in chips],
                geometry=polys.get(k),
                area_m2=None if area is None else round(len(ys) * area, 2),
                pixels=int(len(ys)),
                share=len(ys) / scene_px if scene_px else 0.0,
                score=round(float(scores[ys, xs].mean()), 5),
                location=compass(float(xs.mean()), float(ys.mean()), w, h),
                centroid_px=(round(float(xs.mean()), 2), round(float(ys.mean()), 2)),
                class_before="",
                class_after="",
                bbox_px=(
                    sl[1].start,
                    sl[0].start,
                    sl[1].stop - sl[1].start,
                    sl[0].stop - sl[0].start,
                ),
            )
        )
    return regions, lab > 0


def _chips_covered(region: np.ndarray, grid) -> list[tuple[int, int]]:
    out = []
    for i, row in enumerate(grid):
        for j, (c, r, ww, hh) in enumerate(row):
            if ww and hh and region[r : r + hh, c : c + ww].mean() >= CHIP_CHANGED:
                out.append((i, j))
    return out


def chip_grid(width: int, height: int, size: int) -> list[list[tuple[int, int, int, int]]]:
    """Non-overlapping chip windows of ``size`` px covering the scene (edge chips shifted in)."""
    from skylens.imagery.tiling import window_starts

    rows = window_starts(height, size, size)
    cols = window_starts(width, size, size)
    return [[(c, r, size, size) for c in cols] for r in rows]


def chip_scores(
    scores: np.ndarray, valid: np.ndarray, grid, quantile: float = 100 * (1 - CHIP_CHANGED)
) -> np.ndarray:
    """(rows, cols) chip scores: the ``quantile`` of each chip's valid pixel scores (p90: high
    when >= 10 % of the chip changed); NaN for chips under half valid."""
    out = np.full((len(grid), len(grid[0]) if grid else 0), np.nan, np.float32)
    for i, row in enumerate(grid):
        for j, (c, r, ww, hh) in enumerate(row):
            v = valid[r : r + hh, c : c + ww]
            if v.mean() >= 0.5:
                out[i, j] = np.percentile(scores[r : r + hh, c : c + ww][v], quantile)
    return out
