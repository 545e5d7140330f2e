"""Bi-temporal change analysis on real pairs: where, how much and from what to what a place changed.

Two rasters of one place (BEFORE, AFTER; AFTER warped onto BEFORE's grid when they differ) are
compared the way unsupervised deep change vector analysis does (DCVA; Saha, Bovolo & Bruzzone
2019): AFTER is radiometrically matched to BEFORE, both run through the image tower, and the
cosine distance of their spatial feature vectors, tolerant to a few pixels of misregistration,
is the change evidence per cell. It is refined to pixels inside superpixels and thresholded per
pair (Otsu, floored at the encoder's own noise), giving a pixel change mask (GeoTIFF aligned
with BEFORE), regions with GeoJSON polygons and m² areas, chip scores, and a caption whose
headline agrees with the scene-wide warnings. ``ChangeSession`` answers follow-up questions of
the kinds DeltaVLM's ChangeChat covers from the same evidence, citing region ids.

Modules: ``inputs`` (checks, alignment, reading), ``scoring`` (normalisation, deep change
vectors, threshold), ``regions`` (superpixel refinement, regions, polygons, areas),
``pipeline`` (``change``), ``result`` (dataclasses and writers), ``words`` (caption, evidence,
rephrasing), ``answers`` (``ChangeSession``), ``report`` (pictures, HTML).
"""

from skylens.tasks.change.answers import Answer, ChangeSession
from skylens.tasks.change.inputs import as_encoder, check_tile
from skylens.tasks.change.pipeline import LAND_COVER_LABELS, change
from skylens.tasks.change.regions import compass
from skylens.tasks.change.report import change_map, heatmap_image, write_heatmap_png
from skylens.tasks.change.result import ChangeRegion, ChangeResult
from skylens.tasks.change.words import (
    as_text_generator,
    change_caption,
    change_evidence,
    rephrase_caption,
)

# names other modules imported before the split
_as_encoder = as_encoder
_check_tile = check_tile

__all__ = [
    "LAND_COVER_LABELS",
    "Answer",
    "ChangeRegion",
    "ChangeResult",
    "ChangeSession",
    "as_encoder",
    "as_text_generator",
    "change",
    "change_caption",
    "change_evidence",
    "change_map",
    "check_tile",
    "compass",
    "heatmap_image",
    "rephrase_caption",
    "write_heatmap_png",
]
