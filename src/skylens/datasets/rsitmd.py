"""RSITMD: 4,743 remote-sensing images with five fine-grained sentences each, for retrieval.

Yuan, Zhang, Fu, et al., "Exploring a fine-grained multiscale method for cross-modal remote
sensing image retrieval", IEEE TGRS 60, 2022 (AMFMN). Published layout: ``dataset_RSITMD.json``
(Karpathy layout) and ``images/``; the AMFMN ``rsitmd_precomp`` layout (train/test) is read too.
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.captions import CaptionDataset


@register_dataset()
class RSITMD(CaptionDataset):
    """RSITMD (4,743 images x 5 sentences)."""

    name: ClassVar[str] = "rsitmd"
    citation: ClassVar[str] = (
        "Yuan et al., Exploring a fine-grained multiscale method for cross-modal remote sensing "
        "image retrieval, IEEE TGRS 2022"
    )
    json_names: ClassVar[tuple[str, ...]] = ("dataset_RSITMD.json", "dataset_rsitmd.json")
    precomp_dirs: ClassVar[tuple[str, ...]] = ("rsitmd_precomp",)
