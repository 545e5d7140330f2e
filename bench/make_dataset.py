"""Build skylens's own training set from everything in ../shared/data with the ``skylens curate`` steps.

Sources (each curated by its own step, through the dataset registry):

* NWPU-RESISC45 subset (45 classes) and EuroSAT RGB subset (5 classes): ``from-folders``
  (RS5M-style captions from the written class descriptions), split = the registry's seeded
  stratified split (``test`` = the held-out 20 % the model helper evaluates on);
* UCM-Captions: ``from-captions`` (human sentences, Karpathy split; the UC Merced land-use
  images are the same pixels, so they enter once, here);
* DOTA samples: ``from-detections`` (count/presence captions, QA, object crops);
* RSIVQA-UCM: ``from-vqa`` (presence/count/location/scene questions with their answers, split
  fixed by UCM-Captions' dataset.json), joined to the UCM-Captions records of the same image.

Then: ``merge --by-digest`` (one record per image, texts of every source); the evaluation images (every record of split ``test`` or ``val``: UCM-Captions
test and val (RSIVQA's held-out images are UCM-Captions test images), NWPU and EuroSAT test)
become their own dataset; ``filter --split train`` keeps the training split; ``dedupe --against``
the evaluation dataset removes any training image that copies an evaluation image (and exact /
pHash duplicates within); ``filter`` checks caption length and language; ``instruct`` adds
conversations; ``export`` writes WebDataset shards; ``stats`` summarises.

Not included, and why: the RSICD/RSITMD/Sydney caption texts (their images are not here), the
GeoTIFFs (no OpenStreetMap extract overlapping them is available offline), LEVIR-CD (change
pairs, not image-text).

Run: ``PYTHONPATH=src .venv/bin/python bench/make_dataset.py`` (about 3 minutes on 2 cores);
writes ``bench/work/dataset/`` and ``bench/results/dataset_stats.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from skylens.curate.dedupe import dedupe
from skylens.curate.export import export
from skylens.curate.filter import filter_dataset
from skylens.curate.from_captions import from_captions
from skylens.curate.from_detections import from_detections
from skylens.curate.from_folders import from_folders
from skylens.curate.from_vqa import from_vqa
from skylens.curate.instruct import instruct
from skylens.curate.merge import merge
from skylens.curate.stats import dataset_stats, stats_html

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKYLENS_DATA", ROOT.parent / "shared" / "data"))


def build(data: Path, work: Path) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}

    def timed(step, fn, *args, **kwargs):
        t0 = time.perf_counter()
        ds = fn(*args, **kwargs)
        timings[step] = round(time.perf_counter() - t0, 2)
        count = getattr(ds, "count", None)
        print(f"{step}: {count if count is not None else ds} ({timings[step]} s)", flush=True)
        return ds

    timed(
        "from-folders nwpu",
        from_folders,
        data / "nwpu_resisc45_subset",
        work / "nwpu",
        name="nwpu_resisc45",
    )
    timed(
        "from-folders eurosat",
        from_folders,
        data / "eurosat_rgb_subset",
        work / "eurosat",
        name="eurosat",
    )
    timed(
        "from-captions ucm", from_captions, data / "ucm_captions", work / "ucm", name="ucm_captions"
    )
    timed("from-detections dota", from_detections, data / "dota_samples", work / "dota")
    timed("from-vqa rsivqa", from_vqa, data / "rsivqa_ucm", work / "rsivqa",
          image_dir=data / "ucm_captions" / "images", image_splits=data / "ucm_captions" / "dataset.json")  # fmt: skip
    parts = [work / n for n in ("nwpu", "eurosat", "ucm", "rsivqa", "dota")]
    timed("merge", merge, parts, work / "all", name="skylens-train", by_digest=True)
    timed("eval split", filter_dataset, work / "all", work / "eval", keep_splits=["test", "val"],
          min_words=0, language=None)  # fmt: skip
    timed("train split", filter_dataset, work / "all", work / "train_split", keep_splits=["train"],
          min_words=0, language=None)  # fmt: skip
    timed("dedupe", dedupe, work / "train_split", work / "dedup", against=[work / "eval"])
    timed(
        "filter",
        filter_dataset,
        work / "dedup",
        work / "clean",
        min_words=2,
        max_words=77,
        language="en",
    )
    timed("instruct", instruct, work / "clean", work / "train")
    timed("export", export, work / "train", work / "webdataset", fmt="webdataset", shard_size=2000)
    stats = stats_html(work / "train", work / "train_stats.html")
    stats["eval"] = dataset_stats(work / "eval")["by_source"]
    stats["timings_s"] = timings
    stats["load_average"] = os.getloadavg()
    stats["data"] = str(data)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "dataset")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results" / "dataset_stats.json"
    )
    args = parser.parse_args()
    stats = build(args.data, args.work)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(stats, indent=2, default=str))
    print(
        json.dumps(
            {k: stats[k] for k in ("records", "by_source", "by_split", "by_text_kind", "removed")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
