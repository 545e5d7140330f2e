"""AID: 10,000 Google Earth images (600x600, 0.5-8 m) in 30 aerial scene classes.

Xia, Hu, Hu, et al., "AID: A benchmark data set for performance evaluation of aerial scene
classification", IEEE TGRS 55(7), 2017. Published layout: ``AID/<Class>/<class>_N.jpg`` with
CamelCase class folders (``DenseResidential`` -> ``dense residential``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset()
class AID(SceneDataset):
    """AID (30 classes, 220-420 images each)."""

    name: ClassVar[str] = "aid"
    citation: ClassVar[str] = (
        "Xia et al., AID: A benchmark data set for performance evaluation of aerial scene "
        "classification, IEEE TGRS 2017"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("AID",)
    expected_layout: ClassVar[str] = "<root>/<Class>/<class>_N.jpg"
