"""Visual question answering accuracy: overall and per question type.

Remote-sensing VQA benchmarks (RSVQA: Lobry et al. 2020, IEEE TGRS; RSIVQA: Zheng et al. 2021,
IEEE TGRS) score an answer as right when it equals the ground truth, and report the overall
accuracy (OA: right answers over all questions) and the accuracy of each question type
(presence, comparison, count, rural/urban, area; in RSIVQA also scene, location), with the
average accuracy (AA) being the unweighted mean over types.

Exact match is taken after the answer normalisation of the VQA challenge's evaluation script
(Antol et al. 2015): lower case, punctuation removed (a period between digits kept, a comma
between digits dropped), articles (a, an, the) dropped, number words turned into digits
("two" -> "2", "none" -> "0"), and here additionally yes/no synonyms mapped to "yes"/"no"
("yeah", "true" -> "yes"). A question with several acceptable answers counts as right when the
prediction matches any of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from skylens.errors import InputError
from skylens.evaluate.base import Evaluator
from skylens.models.questions import question_kind

_NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBERS["none"] = "0"
_ARTICLES = {"a", "an", "the"}
_YES = {"yes", "yeah", "yep", "yup", "true", "correct", "right", "affirmative", "y"}
_NO = {"no", "nope", "nah", "false", "incorrect", "wrong", "negative", "n"}
_PUNCT = re.compile(r"[!\"#$%&'()*+\-/:;<=>?@\[\\\]^_`{|}~]")
_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_COMMA_IN_NUMBER = re.compile(r"(?<=\d),(?=\d)")


def normalize_answer(answer: str) -> str:
    """Canonical form of an answer for exact-match scoring (see the module docstring).

    >>> normalize_answer("Two.")
    '2'
    >>> normalize_answer("The top-left corner")
    'top left corner'
    """
    text = str(answer).lower().strip()
    text = _COMMA_IN_NUMBER.sub("", text)
    text = text.replace(",", " ")
    text = _PERIOD.sub(" ", text)
    text = _PUNCT.sub(" ", text)
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    out = " ".join(words)
    if out in _YES:
        return "yes"
    if out in _NO:
        return "no"
    return out


def question_type(question: str) -> str:
    """A question's type from its wording, for data sets that do not label types: the one
    parser of skylens, :func:`skylens.models.questions.question_kind`."""
    return question_kind(question)


class VQAEvaluator(Evaluator):
    """Overall accuracy, accuracy per question type and their average (percent).

    Call with ``(predictions, answers, question_types=None, questions=None)``: predicted answer
    strings; ground-truth answers (a string, or a list of acceptable strings, per question);
    each question's type, or the questions themselves to infer types with
    :func:`question_type`. Without either, every question is of type ``all``.

    Metrics: ``overall_accuracy`` (OA), ``average_accuracy`` (AA, the unweighted mean over
    types), and ``accuracy/<type>`` for each type.
    """

    task = "vqa"
    primary_metric = "overall_accuracy"
    greater_is_better = True
    units = "percent"

    def __call__(
        self,
        predictions: Sequence[str],
        answers: Sequence[str | Sequence[str]],
        question_types: Sequence[str] | None = None,
        questions: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Score answers (see the class docstring)."""
        n = len(predictions)
        if len(answers) != n:
            raise InputError(f"{n} predictions but {len(answers)} ground-truth answers")
        if n == 0:
            raise InputError("no answers to evaluate")
        if question_types is not None:
            if len(question_types) != n:
                raise InputError(f"{n} predictions but {len(question_types)} question types")
            types, type_source = [str(t) for t in question_types], "given"
        elif questions is not None:
            if len(questions) != n:
                raise InputError(f"{n} predictions but {len(questions)} questions")
            types, type_source = [question_type(q) for q in questions], "inferred from wording"
        else:
            types, type_source = ["all"] * n, "none"
        right = []
        for pred, truth in zip(predictions, answers, strict=True):
            options = [truth] if isinstance(truth, str) else list(truth)
            if not options:
                raise InputError("a question has no ground-truth answer")
            p = normalize_answer(pred)
            right.append(any(p == normalize_answer(t) for t in options))
        total: Counter[str] = Counter(types)
        correct: Counter[str] = Counter(t for t, ok in zip(types, right, strict=True) if ok)
        per_type = {t: 100.0 * correct[t] / total[t] for t in sorted(total)}
        metrics: dict[str, float] = {
            "overall_accuracy": 100.0 * sum(right) / n,
            "average_accuracy": sum(per_type.values()) / len(per_type),
        }
        metrics.update({f"accuracy/{t}": v for t, v in per_type.items()})
        details = {
            "question_types": type_source,
            "per_type_counts": {
                t: {"questions": total[t], "correct": correct[t]} for t in sorted(total)
            },
            "normalisation": "lower case; punctuation and articles removed; number words to "
            "digits; yes/no synonyms",
        }
        return self._result(metrics, {"questions": n, "types": len(total)}, details)
