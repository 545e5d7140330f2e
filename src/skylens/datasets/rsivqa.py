"""RSIVQA: visual question answering on scenes of UCM, Sydney, AID, HRRSD and DOTA.

Zheng, Wang, Wang, et al., "Mutual attention inception network for remote sensing visual
question answering", IEEE TGRS 60, 2022. Published layout (``RSIVQA/<subset>/*.txt``): text files
of ``IMAGE:QUESTIONANSWER`` lines, the question ending at the first ``?``, e.g.
``1.tif:Does this picture contain trees?yes`` (DOTA writes ``P0003: how many ...?15``).
The images are those of the source dataset (for UCM, the UCM-Captions numbering ``N.tif``);
they are found by stem under ``image_dir`` (default: ``<root>/images`` when present, else root).

Malformed lines are counted (``.malformed``) and skipped with one warning: no ``:`` or ``?``,
an empty image name, question or answer, or a question whose template slot was left empty
(``How many  in the picture?`` -- two blanks where the object should be; 294 such lines in
``UCM/ucm_res.txt``). Answers are kept as published (including typos such as ``harobr``).

``question_type`` is derived from the wording: ``count`` (how many), ``location`` (where / what
is the location), ``scene`` (what is the theme / what kind / what type), ``presence`` (does ...
contain / is there / are there), then ``yes_no`` for other questions answered yes or no, else
``other``.

There is no official split. ``train``/``val``/``test`` hold out whole images: an image goes to
``test`` when a seeded hash of its stem falls below ``test_fraction`` (0.2), to ``val`` below
``test_fraction + val_fraction`` (0.1), else to ``train``; so all questions about an image share
a split, whatever files are read. ``image_splits`` replaces that rule with a given
stem -> split mapping or a Karpathy-style ``dataset*.json`` (e.g. UCM-Captions'), so that a model
trained on UCM-Captions ``train`` is tested on RSIVQA questions about its ``test`` images only.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from skylens.datasets.base import (
    BenchmarkDataset,
    Sample,
    Transform,
    hash_fraction,
    index_images,
    register_dataset,
)
from skylens.errors import DatasetLayoutError, InputError
from skylens.models.questions import KINDS, question_kind

QUESTION_TYPES = KINDS


def rsivqa_question_type(question: str, answer: str = "") -> str:
    """Question family of an RSIVQA question: skylens' one parser
    (:func:`skylens.models.questions.question_kind`), with questions it calls ``other`` but
    answered yes or no counted as ``yes_no``."""
    kind = question_kind(question)
    if kind == "other" and answer.strip().lower() in ("yes", "no"):
        return "yes_no"
    return kind


def parse_rsivqa_line(line: str) -> tuple[str, str, str] | str:
    """Split ``IMAGE:QUESTION?ANSWER`` into (image, question with its ``?``, answer).

    Returns the reason as a string when the line is malformed.
    """
    image, sep, rest = line.partition(":")
    if not sep:
        return "no ':' after the image name"
    question, qmark, answer = rest.partition("?")
    image, question, answer = image.strip(), question.strip(), answer.strip()
    if not qmark:
        return "no '?' ending the question"
    if not image:
        return "empty image name"
    if not question:
        return "empty question"
    if not answer:
        return "empty answer"
    if "  " in question:
        return "empty template slot in the question"
    return image, question + "?", answer


@register_dataset()
class RSIVQA(BenchmarkDataset):
    """RSIVQA question-answer triplets, one sample per question."""

    name: ClassVar[str] = "rsivqa"
    task: ClassVar[str] = "vqa"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "all")
    citation: ClassVar[str] = (
        "Zheng et al., Mutual attention inception network for remote sensing visual question "
        "answering, IEEE TGRS 2022"
    )

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "test",
        transforms: Transform | None = None,
        *,
        files: Sequence[str | os.PathLike[str]] | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        image_splits: Mapping[str, str] | str | os.PathLike[str] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_missing: bool = False,
        images_required: bool = True,
    ) -> None:
        """Read the annotations; root, split, transforms, skip_missing, images_required as in
        :class:`BenchmarkDataset`.

        Args:
            files: question files to read (default: every ``*.txt`` directly under root, sorted).
            image_dir: folder searched recursively for the images.
            image_splits: stem -> split mapping, or a Karpathy ``dataset*.json`` giving each image's
                split; replaces the hashed hold-out.
            test_fraction, val_fraction, seed: the hashed hold-out by image.
        """
        if not (0 <= test_fraction and 0 <= val_fraction and test_fraction + val_fraction < 1):
            raise InputError("test_fraction + val_fraction must be in [0, 1)")
        self.files = [Path(f) for f in files] if files is not None else None
        self.image_dir = Path(image_dir).expanduser() if image_dir is not None else None
        self.image_splits = image_splits
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.seed = seed
        self.malformed = 0
        self.malformed_reasons: Counter[str] = Counter()
        super().__init__(
            root, split, transforms, skip_missing=skip_missing, images_required=images_required
        )

    def split_of(self, stem: str) -> str:
        """The split an image (by stem) belongs to under this dataset's rule."""
        if self._fixed_splits is not None:
            return self._fixed_splits.get(stem, "")
        u = hash_fraction(stem, self.seed)
        if u < self.test_fraction:
            return "test"
        return "val" if u < self.test_fraction + self.val_fraction else "train"

    def _load(self) -> list[Sample]:
        self._fixed_splits = _read_image_splits(self.image_splits)
        if self.files is None:
            files = sorted(self.root.glob("*.txt"))
        else:  # user-given names are relative to the root
            files = [f if f.is_absolute() else self.root / f for f in self.files]
        if not files:
            raise DatasetLayoutError(
                f"{self.root}: no RSIVQA question files (*.txt with IMAGE:QUESTION?ANSWER lines)"
            )
        if self.image_dir is not None:
            image_root = self.image_dir
            if not image_root.is_dir():
                raise DatasetLayoutError(f"{image_root}: image folder not found")
        else:
            image_root = self.root / "images" if (self.root / "images").is_dir() else self.root
        index = index_images(image_root)
        samples: list[Sample] = []
        for path in files:
            if not path.is_file():
                raise DatasetLayoutError(f"{path}: RSIVQA question file not found")
            text = path.read_text(encoding="utf-8", errors="replace")
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                parsed = parse_rsivqa_line(line)
                if isinstance(parsed, str):
                    self.malformed += 1
                    self.malformed_reasons[parsed] += 1
                    continue
                image, question, answer = parsed
                stem = Path(image).stem
                if self.split != "all" and self.split_of(stem) != self.split:
                    continue
                image_path = index.get(stem)
                if image_path is None and self._missing(image, image_root):
                    continue
                samples.append(
                    {
                        "id": f"{path.stem}:{lineno}",
                        "image": image_path,
                        "question": question,
                        "answer": answer,
                        "question_type": rsivqa_question_type(question, answer),
                    }
                )
        if self.malformed:
            detail = ", ".join(f"{n} {r}" for r, n in self.malformed_reasons.most_common())
            warnings.warn(
                f"rsivqa: skipped {self.malformed} malformed lines under {self.root} ({detail})",
                stacklevel=4,
            )
        return samples


def _read_image_splits(
    spec: Mapping[str, str] | str | os.PathLike[str] | None,
) -> dict[str, str] | None:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {Path(str(k)).stem: str(v) for k, v in spec.items()}
    path = Path(spec)
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {Path(im["filename"]).stem: str(im["split"]) for im in images}
    except FileNotFoundError:
        raise DatasetLayoutError(f"{path}: image split file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetLayoutError(
            f"{path}: not a Karpathy-style JSON (images[].filename/split): {exc}"
        ) from None
