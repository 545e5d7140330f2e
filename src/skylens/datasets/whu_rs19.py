"""WHU-RS19: 1,005 Google Earth images (600x600, up to 0.5 m) in 19 scene classes.

Xia, Yang, Delon, et al., "Structural high-resolution satellite image indexing", ISPRS TC VII
Symposium 2010; Dai & Yang, "Satellite image classification via two-layer sparse coding with
biased image representation", IEEE GRSL 8(1), 2011. Published layout: ``WHU-RS19/<Class>/
<class>_NN.jpg`` with mixed-case folders (``railwayStation`` -> ``railway station``).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset("whu-rs19", "whurs19", "rs19")
class WHURS19(SceneDataset):
    """WHU-RS19 (19 classes, about 50 images each)."""

    name: ClassVar[str] = "whu_rs19"
    citation: ClassVar[str] = (
        "Dai and Yang, Satellite image classification via two-layer sparse coding with biased "
        "image representation, IEEE GRSL 2011"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("WHU-RS19", "RSDataset")
    expected_layout: ClassVar[str] = "<root>/<Class>/<class>_NN.jpg"
