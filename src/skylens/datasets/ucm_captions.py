"""UCM-Captions: the 2,100 UC Merced land-use images with five sentences each.

Qu, Zhang, Wang, Li, "Deep semantic understanding of high resolution remote sensing image",
CITS 2016. Published layout: ``dataset.json`` (Karpathy layout, images ``1.tif`` ...
``2100.tif``, split 1680 train / 210 val / 210 test) and the images folder (``imgs/`` in the
original release, ``images/`` in many copies); the AMFMN ``ucm_precomp`` layout is read too.

Caption image ``N`` is UC Merced image number ``(N-1) % 100`` of class
``UCM_CLASS_FOLDERS[(N-1) // 100]`` (see ``../shared/data/README.md``), so each sample also
carries its scene ``label`` and the dataset the 21 ``classes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import Sample, readable_class_name, register_dataset
from skylens.datasets.captions import CaptionDataset

#: UC Merced class folders in sorted order; caption image N belongs to [(N-1) // 100].
UCM_CLASS_FOLDERS: tuple[str, ...] = (
    "agricultural",
    "airplane",
    "baseballdiamond",
    "beach",
    "buildings",
    "chaparral",
    "denseresidential",
    "forest",
    "freeway",
    "golfcourse",
    "harbor",
    "intersection",
    "mediumresidential",
    "mobilehomepark",
    "overpass",
    "parkinglot",
    "river",
    "runway",
    "sparseresidential",
    "storagetanks",
    "tenniscourt",
)
UCM_IMAGES_PER_CLASS = 100


def ucm_caption_number(folder: str, index: int) -> int:
    """UCM-Captions image number of UC Merced image ``{folder}{index:02d}`` (1-based)."""
    return UCM_CLASS_FOLDERS.index(folder) * UCM_IMAGES_PER_CLASS + index + 1


@register_dataset("ucm-caption", "ucmcaptions")
class UCMCaptions(CaptionDataset):
    """UCM-Captions (2,100 images x 5 sentences; 1680/210/210 split). ``label``: scene class."""

    name: ClassVar[str] = "ucm_captions"
    citation: ClassVar[str] = (
        "Qu et al., Deep semantic understanding of high resolution remote sensing image, CITS 2016"
    )
    json_names: ClassVar[tuple[str, ...]] = (
        "dataset.json",
        "dataset_ucm.json",
        "dataset_ucmd.json",
    )
    precomp_dirs: ClassVar[tuple[str, ...]] = ("ucm_precomp",)
    classes: list[str] = [readable_class_name(c) for c in UCM_CLASS_FOLDERS]

    def _annotate(self, sample: Sample, filename: str) -> None:
        stem = Path(filename).stem
        if stem.isdigit() and 1 <= int(stem) <= len(UCM_CLASS_FOLDERS) * UCM_IMAGES_PER_CLASS:
            sample["label"] = (int(stem) - 1) // UCM_IMAGES_PER_CLASS
