"""NWPU-RESISC45: 31,500 Google Earth images (256x256, 0.2-30 m) in 45 scene classes of 700.

Cheng, Han, Lu, "Remote sensing image scene classification: benchmark and state of the art",
Proceedings of the IEEE 105(10), 2017. Published layout:
``NWPU-RESISC45/<class>/<class>_NNN.jpg`` with snake_case folders (``storage_tank``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset("resisc45", "nwpu-resisc45", "nwpu_resisc")
class NWPURESISC45(SceneDataset):
    """NWPU-RESISC45 (45 classes x 700 images)."""

    name: ClassVar[str] = "nwpu_resisc45"
    citation: ClassVar[str] = (
        "Cheng, Han and Lu, Remote sensing image scene classification: benchmark and state of "
        "the art, Proc. IEEE 2017"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("NWPU-RESISC45",)
    expected_layout: ClassVar[str] = "<root>/NWPU-RESISC45/<class>/<class>_NNN.jpg"
