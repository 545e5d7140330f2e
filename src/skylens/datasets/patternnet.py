"""PatternNet: 30,400 Google Earth / Maps images (256x256, 0.06-4.7 m) in 38 classes of 800.

Zhou, Newsam, Li, Shao, "PatternNet: A benchmark dataset for performance evaluation of remote
sensing image retrieval", ISPRS J. Photogramm. Remote Sens. 145, 2018. Published layout:
``PatternNet/images/<class>/<class>NNN.jpg`` with snake_case folders (``christmas_tree_farm``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset("pattern_net", "pattern-net")
class PatternNet(SceneDataset):
    """PatternNet (38 classes x 800 images)."""

    name: ClassVar[str] = "patternnet"
    citation: ClassVar[str] = (
        "Zhou et al., PatternNet: A benchmark dataset for performance evaluation of remote "
        "sensing image retrieval, ISPRS JPRS 2018"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("images", "PatternNet/images")
    expected_layout: ClassVar[str] = "<root>/images/<class>/<class>NNN.jpg"
