"""RSSCN7: 2,800 Google Earth images (400x400) in 7 scene classes of 400.

Zou, Ni, Zhang, Wang, "Deep learning based feature selection for remote sensing scene
classification", IEEE GRSL 12(11), 2015. Published layout: ``RSSCN7/<xClass>/<x>NNN.jpg`` where
an ordering letter prefixes each folder (``aGrass``, ``dRiverLake``); ``classes`` drops it
(``grass``, ``river lake``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset()
class RSSCN7(SceneDataset):
    """RSSCN7 (7 classes x 400 images)."""

    name: ClassVar[str] = "rsscn7"
    citation: ClassVar[str] = (
        "Zou et al., Deep learning based feature selection for remote sensing scene "
        "classification, IEEE GRSL 2015"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("RSSCN7",)
    letter_prefix: ClassVar[bool] = True
    expected_layout: ClassVar[str] = "<root>/<aGrass|bField|...>/<image>.jpg"
