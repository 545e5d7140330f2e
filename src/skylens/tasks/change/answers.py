"""Follow-up questions about a change (DeltaVLM's ChangeChat kinds), answered from the evidence.

``ChangeSession`` analyses a pair once and answers whether, how many, how much, where, and
what was there before / is there now from the structured result, citing region ids; open
questions go to a language model when one is configured, else are refused with the reason.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from skylens.errors import InputError, SkylensError
from skylens.models.answerer import Answer as SharedAnswer
from skylens.models.answerer import question_kind
from skylens.models.base import ImageTextEncoder, TextGenerator
from skylens.tasks.change.pipeline import change
from skylens.tasks.change.words import (
    _ANSWER_SYSTEM,
    LLM_MAX_TOKENS,
    _area,
    _area_total,
    _count,
    _pct,
    _short_bbox,
    as_text_generator,
    change_evidence,
)


@dataclass
class Answer(SharedAnswer):
    """A reply of ``ChangeSession.ask``: the shared ``skylens.models.answerer.Answer`` plus the
    regions it rests on.

    Attributes:
        question, kind, text, supported, confidence, reason: as the shared ``Answer``; kind is
            'changed', 'count', 'area', 'where', 'before', 'after', 'open' or 'unsupported'.
        region_ids: the regions the answer rests on (open questions: those the language model
            cited as ``[region N]``, or all regions when it cited none).
        answered_by: 'evidence' (rules over the structured result) or the language model's
            name (open questions).
    """

    region_ids: list[int] = field(default_factory=list)
    answered_by: str = "evidence"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ChangeSession:
    """A pair analysed once, answering follow-up questions from the structured evidence.

    Example:
        >>> s = ChangeSession("2016.tif", "2020.tif", "default")   # doctest: +SKIP
        >>> s.ask("how many regions changed?").text                  # doctest: +SKIP
    """

    def __init__(
        self,
        before: str | Path,
        after: str | Path,
        model: ImageTextEncoder | str,
        *,
        llm: TextGenerator | str | None = None,
        **options: object,
    ) -> None:
        """Analyse the pair (``change``'s options) once.

        Args:
            llm: a ``TextGenerator`` or its name: rephrases the caption and answers open
                questions from the evidence.
        """
        self.llm = as_text_generator(llm) if llm is not None else None
        self.result = change(before, after, model, llm=self.llm, **options)

    def ask(self, question: str) -> Answer:
        """Answer a question about the change; open questions go to the language model, or
        are refused with the reason when there is none.

        Raises:
            InputError: an empty question.
        """
        q = (question or "").strip()
        if not q:
            raise InputError("the question is empty; ask e.g. 'did anything change?'")
        kind = change_question_kind(q)
        r = self.result
        ids = [g.id for g in r.regions]
        if kind == "unsupported":
            if self.llm is not None:
                return self._ask_llm(q)
            return Answer(
                q,
                kind,
                "cannot answer with this model: it answers whether, how many, how much, where, "
                "and what was there before / is there now; open questions need a language "
                "backend (--llm NAME) and none is configured",
                supported=False,
            )
        if r.uniform_change and not r.regions:
            return Answer(q, kind, f"No region can be singled out: {r.caption}", region_ids=[])
        if not r.regions:
            text = {
                "changed": "No.",
                "count": "0 regions changed.",
                "area": "0 m² (0% of the scene) changed.",
            }.get(kind, "Nothing changed above the calibrated threshold, so there is no region.")
            return Answer(q, kind, f"{text} {r.caption}".strip(), region_ids=[])
        cite = lambda g: f"[region {g.id}]"  # noqa: E731
        if kind == "changed":
            text = f"Yes: {_count(len(r.regions))} changed ({_pct(r.changed_share)} of the scene)."
        elif kind == "count":
            text = f"{_count(len(r.regions))} changed: " + ", ".join(cite(g) for g in r.regions)
        elif kind == "area":
            parts = [f"{_area(g)} {cite(g)}" for g in r.regions]
            total = _area_total(r)
            text = f"{total} changed, {_pct(r.changed_share)} of the scene: " + "; ".join(parts)
        elif kind == "where":
            text = "; ".join(
                f"in the {g.location} {cite(g)}"
                + (f" (polygon: {_short_bbox(g.geometry)})" if g.geometry else "")
                for g in r.regions
            )
        elif kind == "before":
            text = "; ".join(f"{g.class_before} {cite(g)}" for g in r.regions)
        else:  # after
            text = "; ".join(f"{g.class_after} {cite(g)}" for g in r.regions)
        return Answer(q, kind, text, region_ids=ids)

    def _ask_llm(self, question: str) -> Answer:
        """An open question answered by the language model from the structured evidence."""
        r = self.result
        messages = [
            {"role": "system", "content": _ANSWER_SYSTEM},
            {
                "role": "user",
                "content": f"Evidence:\n{change_evidence(r)}\n\nQuestion: {question}",
            },
        ]
        name = getattr(self.llm, "name", type(self.llm).__name__)
        try:
            text = str(
                self.llm.generate(messages, max_tokens=LLM_MAX_TOKENS, temperature=0.0)
            ).strip()
        except (SkylensError, OSError) as exc:  # typed backend errors, unreachable servers
            return Answer(
                question,
                "open",
                f"cannot answer with this model: the language model '{name}' failed ({exc})",
                supported=False,
                answered_by=name,
            )
        known = {g.id for g in r.regions}
        cited = [
            i for i in dict.fromkeys(map(int, re.findall(r"\[region (\d+)\]", text))) if i in known
        ]
        return Answer(
            question,
            "open",
            text or "(the language model gave no answer)",
            region_ids=cited or sorted(known),
            supported=bool(text),
            answered_by=name,
        )


# The change-specific kinds the shared parser (``skylens.models.answerer.question_kind``) does
# not know: how much / what was there before / what is there now / did it change.
_CHANGE_KINDS = (
    ("area", r"\bhow (much|large|big)\b|\barea\b|\bpercent|\bshare\b|\bsize\b|\bm2\b|m²"),
    ("before", r"\bbefore\b|\bwas (it|there)\b|\bused to\b|\bpreviously\b|\boriginally\b"),
    ("after", r"\bnow\b|\bafter\b|\bbecome\b|\bbecame\b|\bturned into\b|\bis (it|there) now\b"),
    ("changed", r"\b(chang|differ|modif|alter)\w*"),
)
_SHARED_KINDS = {"count": "count", "location": "where", "area": "area"}  # shared kind -> change kind


def change_question_kind(q: str) -> str:
    """The change kind of a question: the shared parser's count / location first, then the
    change vocabulary (area, before, after, changed); else 'unsupported'."""
    shared = _SHARED_KINDS.get(question_kind(q))
    if shared:
        return shared
    text = q.lower()
    if re.search(r"\bnumber of\b|\bcount\b", text):
        return "count"
    if re.search(r"\bwhere\b|\blocat|\bwhich part\b|\bpolygon", text):
        return "where"
    for kind, pattern in _CHANGE_KINDS:
        if re.search(pattern, text):
            return kind
    return "unsupported"
