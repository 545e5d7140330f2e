"""skylens.curate: the data engine that builds image-text and instruction datasets.

A curated dataset is a folder of Parquet records (``records.SCHEMA``) and a manifest of every
step (``store``); each step reads one and writes a new one atomically. Sources: ``from_folders``
(RS5M-style captions from class labels, ``vocabulary``), ``from_captions`` (Karpathy/precomp),
``from_detections`` (DOTA/COCO boxes -> counts, QA, region crops), ``from_osm`` (SkyScript tag
captions of raster chips), ``from_webdataset`` (img2dataset/RS5M/GAIA shards). Steps:
``merge``, ``dedupe`` (exact, pHash, embedding; against evaluation sets), ``filter`` (score,
length, language, split), ``instruct`` (RS-GPT4V/SkyEyeGPT conversations), ``export``
(WebDataset, Parquet, Hugging Face), ``stats``. Each step is a pure batch function
(``pipeline.BatchFn``) so ``skylens.scale`` can map it on Ray Data.
"""
