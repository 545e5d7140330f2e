"""Shared writer for the tiny RSVQA-LR/HR copies (``tests/data/rsvqa_*/make.py``).

Both releases use one layout (``{PREFIX}_split_{split}_{images,questions,answers}.json`` and an
image folder); only the prefix, the folder, the splits and the question types differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

ANSWERS = {"presence": "yes", "count": "12", "comp": "no", "rural_urban": "rural", "area": "120m2"}
QUESTIONS = {
    "presence": "Is there a road?",
    "count": "How many buildings are there?",
    "comp": "Are there more buildings than roads?",
    "rural_urban": "Is it a rural or an urban area?",
    "area": "What is the area covered by buildings?",
}


def write_rsvqa(
    root: Path,
    prefix: str,
    image_folder: str,
    splits: dict[str, list[int]],
    types: list[str],
    seed: int = 0,
) -> Path:
    """Write images and the three JSON files per split; one question of each type per image, the
    first image's last question inactive, and train's image 3 inactive."""
    rng = np.random.default_rng(seed)
    (root / image_folder).mkdir(parents=True, exist_ok=True)
    qid = 0
    for split, ids in splits.items():
        images, questions, answers = [], [], []
        for k, img_id in enumerate(ids):
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / image_folder / f"{img_id}.tif")
            qids = []
            for t, qtype in enumerate(types):
                active = not (k == 0 and t == len(types) - 1)
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
            path = root / f"{prefix}_split_{split}_{kind}.json"
            path.write_text(json.dumps({kind: rows}))
    return root
