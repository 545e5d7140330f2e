"""SIRI-WHU (Google): 2,400 Google Earth images (200x200, 2 m) of Wuhan in 12 classes of 200.

Zhao, Zhong, Xia, Zhang, "Dirichlet-derived multiple topic scene classification model for high
spatial resolution remote sensing imagery", IEEE TGRS 54(4), 2016. Published layout:
``12class_tif/<class>/NNNN.tif`` with lower-case folders (``idle_land`` -> ``idle land``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset("siri-whu", "siriwhu")
class SIRIWHU(SceneDataset):
    """SIRI-WHU Google image set (12 classes x 200 images)."""

    name: ClassVar[str] = "siri_whu"
    citation: ClassVar[str] = (
        "Zhao et al., Dirichlet-derived multiple topic scene classification model for high "
        "spatial resolution remote sensing imagery, IEEE TGRS 2016"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = (
        "12class_tif",
        "Google dataset of SIRI-WHU_earth_im_tiff/12class_tif",
    )
    expected_layout: ClassVar[str] = "<root>/12class_tif/<class>/NNNN.tif"
