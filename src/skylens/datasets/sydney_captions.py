"""Sydney-Captions: 613 aerial images of Sydney (500x500, 0.5 m) with five sentences each.

Qu, Zhang, Wang, Li, "Deep semantic understanding of high resolution remote sensing image",
CITS 2016. Published layout: a Karpathy-style ``dataset.json`` (copies name it
``dataset_sydney.json`` or ``dataset_sydney_modified.json``; 497 train / 58 val / 58 test) with
images ``1.tif`` ... ``613.tif``; the AMFMN ``sydney_precomp`` layout is read too.
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.captions import CaptionDataset


@register_dataset("sydney", "sydney-caption")
class SydneyCaptions(CaptionDataset):
    """Sydney-Captions (613 images x 5 sentences)."""

    name: ClassVar[str] = "sydney_captions"
    citation: ClassVar[str] = (
        "Qu et al., Deep semantic understanding of high resolution remote sensing image, CITS 2016"
    )
    json_names: ClassVar[tuple[str, ...]] = (
        "dataset.json",
        "dataset_sydney.json",
        "dataset_sydney_modified.json",
    )
    precomp_dirs: ClassVar[tuple[str, ...]] = ("sydney_precomp",)
