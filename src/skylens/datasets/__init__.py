"""skylens.datasets: one loader per benchmark, one sample contract (``base.Sample``).

``get_dataset(name, root, split)`` returns a sequence of sample dicts read from the dataset's
published on-disk layout; ``load_image(sample)`` decodes its image to HxWx3 uint8 RGB.

================  =================  =====================================================
task              name               published layout read
================  =================  =====================================================
captioning        ucm_captions       dataset.json (Karpathy) or ucm_precomp; imgs/N.tif
captioning        sydney_captions    dataset*.json (Karpathy) or sydney_precomp
captioning        rsicd              dataset_rsicd.json + RSICD_images/, or rsicd_precomp
captioning        rsitmd             dataset_RSITMD.json + images/, or rsitmd_precomp
captioning        nwpu_captions      dataset_nwpu.json + NWPU_images/<class>/
classification    ucm_landuse        Images/<class>/<class>NN.tif (+ captions-* splits)
classification    aid                <Class>/<class>_N.jpg
classification    nwpu_resisc45      NWPU-RESISC45/<class>/<class>_NNN.jpg
classification    eurosat            2750/<Class>/<Class>_N.jpg (RGB)
classification    whu_rs19           <Class>/<class>_NN.jpg
classification    rsscn7             <xClass>/<x>NNN.jpg
classification    patternnet         images/<class>/<class>NNN.jpg
classification    siri_whu           12class_tif/<class>/NNNN.tif
vqa               rsivqa             <subset>/*.txt (IMAGE:QUESTION?ANSWER lines)
vqa               rsvqa_lr           LR_split_<split>_{questions,answers,images}.json
vqa               rsvqa_hr           USGS_split_<split>_{questions,answers,images}.json
change_captioning levir_cc           LevirCCcaptions.json + images/<split>/{A,B}/
detection         dota               images/P0001.png + labelTxt/P0001.txt (oriented boxes)
detection         coco_boxes         annotations/instances_<split>.json (COCO boxes)
================  =================  =====================================================
"""

from skylens.datasets import (  # noqa: F401  (importing registers each loader)
    aid,
    coco_boxes,
    dota,
    eurosat,
    levir_cc,
    nwpu_captions,
    nwpu_resisc45,
    patternnet,
    rsicd,
    rsitmd,
    rsivqa,
    rsscn7,
    rsvqa,
    siri_whu,
    sydney_captions,
    ucm_captions,
    ucm_landuse,
    whu_rs19,
)
from skylens.datasets.base import (
    DATASETS,
    IMAGE_KEYS,
    SAMPLE_KEYS,
    BenchmarkDataset,
    Sample,
    dataset_class,
    get_dataset,
    load_image,
    readable_class_name,
    register_dataset,
)
from skylens.datasets.captions import CaptionDataset
from skylens.datasets.scene import SceneDataset

__all__ = [
    "DATASETS",
    "IMAGE_KEYS",
    "SAMPLE_KEYS",
    "BenchmarkDataset",
    "CaptionDataset",
    "Sample",
    "SceneDataset",
    "dataset_class",
    "get_dataset",
    "load_image",
    "readable_class_name",
    "register_dataset",
]
