"""EuroSAT (RGB): 27,000 Sentinel-2 RGB patches (64x64, 10 m) in 10 land-cover classes.

Helber, Bischke, Dengel, Borth, "EuroSAT: A novel dataset and deep learning benchmark for land
use and land cover classification", IEEE JSTARS 12(7), 2019. Published layouts of the RGB
release: ``2750/<Class>/<Class>_N.jpg`` (original zip) or ``EuroSAT_RGB/<Class>/...`` (Zenodo);
CamelCase folders (``HerbaceousVegetation`` -> ``herbaceous vegetation``). The 13-band MS
release (GeoTIFF) is not read here.
"""

from __future__ import annotations

from typing import ClassVar

from skylens.datasets.base import register_dataset
from skylens.datasets.scene import SceneDataset


@register_dataset("eurosat_rgb", "eurosat-rgb")
class EuroSAT(SceneDataset):
    """EuroSAT RGB (10 classes, 2,000-3,000 images each)."""

    name: ClassVar[str] = "eurosat"
    citation: ClassVar[str] = (
        "Helber et al., EuroSAT: A novel dataset and deep learning benchmark for land use and "
        "land cover classification, IEEE JSTARS 2019"
    )
    class_root_hints: ClassVar[tuple[str, ...]] = ("2750", "EuroSAT_RGB", "EuroSAT/2750")
    expected_layout: ClassVar[str] = "<root>/2750/<Class>/<Class>_N.jpg"
