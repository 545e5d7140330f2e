"""What ``change`` returns: changed regions and the pair's result, as plain data.

``ChangeResult`` serializes to JSON (``to_dict``), to GeoJSON polygons of the changed pixels in
EPSG:4326 (``to_geojson``, RFC 7946) and writes the pixel change mask as a GeoTIFF on BEFORE's
grid (``write_mask``: same size, transform and CRS), a PNG change map and an HTML report.
"""

from __future__ import annotations

import dataclasses
import json
import warnings as warnings_module
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MASK_NODATA = 255  # mask GeoTIFF value where one of the dates has no data


@dataclass
class ChangeRegion:
    """A connected group of changed pixels.

    Attributes:
        id: 1-based region number, largest region first.
        chips: (grid_row, grid_col) of the chips the region covers >= 10 % of.
        windows: their pixel windows (col_off, row_off, width, height) on BEFORE's grid.
        geometry: GeoJSON MultiPolygon (EPSG:4326 lon/lat) of the region's pixels, or None when
            BEFORE is not georeferenced.
        area_m2: ground area of its pixels in square metres, or None without a CRS.
        pixels: area in BEFORE pixels.
        share: fraction (0..1) of the compared scene.
        score: mean change score of its pixels.
        location: compass word of the centroid ('north-east', 'centre', ...).
        centroid_px: (col, row) of the centroid in pixels.
        class_before, class_after: zero-shot land-cover class of the region at each date.
        bbox_px: (col_off, row_off, width, height) of the region's bounding box in pixels.
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
    bbox_px: tuple[int, int, int, int] = (0, 0, 0, 0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["chips"] = [list(c) for c in self.chips]
        d["windows"] = [list(w) for w in self.windows]
        d["centroid_px"] = list(self.centroid_px)
        d["bbox_px"] = list(self.bbox_px)
        return d


@dataclass
class ChangeResult:
    """Everything ``change`` found, in plain data.

    Attributes:
        before, after: the two rasters.
        crs: CRS of the comparison grid (BEFORE's), or None.
        tile: chip side in pixels (the unit of ``scores``).
        grid_shape: (rows, cols) of the chip grid.
        scores: (rows, cols) float32 chip change scores (the 90th percentile of the chip's pixel
            scores: high when >= 10 % of the chip changed), NaN where a chip had no data.
        windows: (rows, cols) -> pixel window, row-major list of lists.
        threshold: the pixel score above which a pixel counts as changed.
        threshold_method: how the threshold was set ('given' or its terms).
        regions: changed regions, largest first.
        chips_compared, chips_skipped_nodata: chip counts.
        changed_share: fraction (0..1) of the compared scene in changed regions.
        caption: one-sentence summary built from the regions.
        warnings: things the user must know (alignment assumed, reprojection, background).
        scene_pixels: compared pixels (valid at both dates, on BEFORE's grid).
        scene_area_m2: their ground area, or None.
        image_size: (width, height) of BEFORE in pixels.
        uniform_change: the whole scene changed alike, so no region stands out.
        background_changed: the typical pixel score is far above the encoder's noise (season,
            illumination, registration): regions are what stands out against that.
        caption_structured: the caption built from the evidence; ``caption`` is the same unless
            a language model rephrased it.
        caption_model: name of the language model that rephrased ``caption``, or None.
        mask: (H, W) bool pixel change mask on BEFORE's grid (not serialized by ``to_dict``).
        valid: (H, W) bool pixels with data at both dates.
        transform: BEFORE's affine transform (rasterio ``Affine``), or None.
        cell: side in pixels of the deep-feature cells the evidence comes from.
        evidence: 'feature grid' (the image tower's spatial map) or 'cell embeddings'.
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
    image_size: tuple[int, int] = (0, 0)
    uniform_change: bool = False
    background_changed: bool = False
    caption_structured: str = ""
    caption_model: str | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    valid: np.ndarray | None = field(default=None, repr=False)
    transform: object = field(default=None, repr=False)
    cell: int = 0
    evidence: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.regions)

    @property
    def area_unit(self) -> str:
        """'m2' when areas are ground areas, 'px' when BEFORE has no CRS."""
        return "px" if self.scene_area_m2 is None else "m2"

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN scores become null; the pixel mask is left out)."""
        scores = [
            [None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in self.scores
        ]
        return {
            "before": self.before,
            "after": self.after,
            "crs": self.crs,
            "tile": self.tile,
            "cell": self.cell,
            "evidence": self.evidence,
            "grid_shape": list(self.grid_shape),
            "threshold": round(float(self.threshold), 6),
            "threshold_method": self.threshold_method,
            "changed": self.changed,
            "changed_share": round(self.changed_share, 6),
            "changed_pixels": int(sum(g.pixels for g in self.regions)),
            "chips_compared": self.chips_compared,
            "chips_skipped_nodata": self.chips_skipped_nodata,
            "scene_pixels": self.scene_pixels,
            "scene_area_m2": self.scene_area_m2,
            "area_unit": self.area_unit,
            "caption": self.caption,
            "caption_structured": self.caption_structured or self.caption,
            "caption_model": self.caption_model,
            "uniform_change": self.uniform_change,
            "background_changed": self.background_changed,
            "warnings": list(self.warnings),
            "regions": [r.to_dict() for r in self.regions],
            "scores": scores,
        }

    def to_geojson(self) -> dict:
        """A GeoJSON FeatureCollection (EPSG:4326): one Feature per changed region, its
        geometry the polygons of the region's pixels and ``area_m2`` its ground area (null,
        with ``area_unit`` 'px' and ``pixels``, when BEFORE has no CRS)."""
        feats = []
        for r in self.regions:
            props = r.to_dict()
            props.pop("geometry")
            props["change"] = f"{r.class_before} -> {r.class_after}"
            props["area_unit"] = self.area_unit
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
                "background_changed": self.background_changed,
                "area_unit": self.area_unit,
                "warnings": list(self.warnings),
            },
        }

    def write_geojson(self, path: str | Path) -> Path:
        """Write ``to_geojson()`` to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_geojson(), indent=1))
        return path

    def write_mask(self, path: str | Path) -> Path:
        """Write the pixel change mask as a single-band uint8 GeoTIFF aligned with BEFORE.

        Values: 1 changed, 0 unchanged, 255 (nodata) where a date has no data. Same width,
        height, transform and CRS as BEFORE; without a CRS the file has pixel coordinates only.

        Args:
            path: output ``.tif``.
        """
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        if self.mask is None:
            from skylens.errors import InputError

            raise InputError("this change result holds no pixel mask to write")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.mask.astype(np.uint8)
        if self.valid is not None:
            data[~self.valid] = MASK_NODATA
        profile = {
            "driver": "GTiff",
            "width": data.shape[1],
            "height": data.shape[0],
            "count": 1,
            "dtype": "uint8",
            "nodata": MASK_NODATA,
            "compress": "deflate",
        }
        if self.transform is not None:
            profile["transform"] = self.transform
        if self.crs is not None:
            profile["crs"] = self.crs
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data, 1)
                dst.set_band_description(1, "change mask: 1 changed, 0 unchanged")
        return path

    def write_png(self, path: str | Path, *, max_side: int = 1024) -> Path:
        """Write the change map (the mask and regions over AFTER) as a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.change_map(max_side=max_side).save(path)
        return path

    def change_map(self, *, max_side: int = 1024):
        """The change map as a PIL image: the mask in red over AFTER, regions outlined."""
        from skylens.tasks.change.report import change_map

        return change_map(self, max_side=max_side)

    def to_html(self, *, answer=None, max_side: int = 512) -> str:
        """One self-contained HTML report (see ``skylens.tasks.change.report``)."""
        from skylens.tasks.change.report import change_html

        return change_html(self, answer=answer, max_side=max_side)
