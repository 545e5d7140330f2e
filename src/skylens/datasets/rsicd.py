"""RSICD: 10,921 remote-sensing images (224x224) with five sentences each.

Lu, Wang, Zheng, Li, "Exploring models and data for remote sensing image caption generation",
IEEE TGRS 56(4), 2018. Published layout: ``dataset_rsicd.json`` (Karpathy layout) and
``RSICD_images/``; retrieval work uses the AMFMN ``rsicd_precomp`` layout (train/test only).
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.captions import CaptionDataset


@register_dataset()
class RSICD(CaptionDataset):
    """RSICD (10,921 images x 5 sentences)."""

    name: ClassVar[str] = "rsicd"
    citation: ClassVar[str] = (
        "Lu et al., Exploring models and data for remote sensing image caption generation, "
        "IEEE TGRS 2018"
    )
    json_names: ClassVar[tuple[str, ...]] = ("dataset_rsicd.json", "dataset_RSICD.json")
    precomp_dirs: ClassVar[tuple[str, ...]] = ("rsicd_precomp",)
