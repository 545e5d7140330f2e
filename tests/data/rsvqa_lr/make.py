"""Write a tiny RSVQA-LR copy in the published layout (seeded).

Layout: ``LR_split_{split}_{questions,answers,images}.json`` (each a single list under
``questions``/``answers``/``images`` whose rows carry ``id`` and ``active``) and the images
as ``Images_LR/{id}.tif``. Splits: {"train": [0, 1, 2, 3], "val": [4], "test": [5]} (image ids).
Each image has four questions, one per type in ["presence", "count", "comp", "rural_urban"]; in every split
the last question of the first image is inactive, and in train image 3 is inactive (so are its
questions). Valid questions per split: 4 * images - 1 (- 4 for train's inactive image).

Usage: ``python make.py OUT_DIR`` or ``make(Path(out_dir))``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PREFIX = "LR"
IMAGE_FOLDER = "Images_LR"
SPLITS = {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
TYPES = ["presence", "count", "comp", "rural_urban"]
ANSWERS = {"presence": "yes", "count": "12", "comp": "no", "rural_urban": "rural", "area": "120m2"}
QUESTIONS = {
    "presence": "Is there a road?",
    "count": "How many buildings are there?",
    "comp": "Are there more buildings than roads?",
    "rural_urban": "Is it a rural or an urban area?",
    "area": "What is the area covered by buildings?",
}


def expected_count(split: str) -> int:
    n = 4 * len(SPLITS[split]) - 1
    return n - 4 if split == "train" else n


def make(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    qid = 0
    for split, ids in SPLITS.items():
        images, questions, answers = [], [], []
        for k, img_id in enumerate(ids):
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / IMAGE_FOLDER / f"{img_id}.tif")
            qids = []
            for t, qtype in enumerate(TYPES):
                active = not (k == 0 and t == len(TYPES) - 1)
                questions.append(
                    {
                        "id": qid,
                        "date_added": 1.0,
                        "img_id": img_id,
                        "people_id": 0,
                        "type": qtype,
                        "question": QUESTIONS[qtype],
                        "answers_ids": [qid],
                        "active": active,
                    }
                )
                answers.append(
                    {
                        "id": qid,
                        "date_added": 1.0,
                        "question_id": qid,
                        "people_id": 0,
                        "answer": ANSWERS[qtype],
                        "active": active,
                    }
                )
                qids.append(qid)
                qid += 1
            images.append(
                {
                    "id": img_id,
                    "date_added": 1.0,
                    "people_id": 0,
                    "original_name": f"tile_{img_id}.tif",
                    "questions_ids": qids,
                    "active": not (split == "train" and img_id == 3),
                }
            )
        for kind, rows in (("images", images), ("questions", questions), ("answers", answers)):
            path = root / f"{PREFIX}_split_{split}_{kind}.json"
            path.write_text(json.dumps({kind: rows}))
    return root


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
