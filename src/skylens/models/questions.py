"""Question kinds: the one parser of visual questions that every part of skylens uses.

Kinds follow the remote-sensing VQA benchmarks (RSVQA: Lobry et al., IEEE TGRS 2020; RSIVQA:
Zheng et al., IEEE TGRS 2022): ``scene`` (what is the theme), ``presence`` (is there / does this
picture contain), ``count`` (how many), ``location`` (where is / what is the location of),
``comparison`` (are there more X than Y), ``area`` (what is the area covered by), ``rural_urban``
(is this a rural or an urban area), ``change`` (what changed between two dates), ``yes_no``
(other yes/no questions) and ``other``. The answerer (``models/answerer.py``), the VQA
evaluator (``evaluate/vqa.py``), the RSIVQA loader and change questions all call
:func:`question_kind`; :func:`question_object` gives the object a question asks about.
"""

from __future__ import annotations

import re

KINDS = (
    "scene", "presence", "count", "location", "comparison", "area", "rural_urban", "change",
    "yes_no", "other",
)  # fmt: skip

_IN_PICTURE = r"(?: (?:in|on|of) (?:this|the) (?:picture|image|scene|photo|area))?"
_PRESENCE = (
    re.compile(r"\b(?:does|do) (?:this|the) (?:picture|image|scene|photo) (?:contain|have|show|include) (?:an? |the |any |some )?(?P<obj>.+?)\??$", re.I),
    re.compile(r"\b(?:is|are) there (?:an? |any |some )?(?P<obj>.+?)" + _IN_PICTURE + r"\??$", re.I),
    re.compile(r"^\s*(?:is|are) (?:an? |the |any |some )?(?P<obj>.+?) (?:present|visible)" + _IN_PICTURE + r"\??$", re.I),
)  # fmt: skip
_COUNT_OBJECT = re.compile(
    r"^\s*(?:how many|what is the number of) (?P<obj>.+?)(?: (?:are|is) there| can you see| do you see)?"
    + _IN_PICTURE
    + r"\??$",
    re.I,
)
_LOCATION_OBJECT = (
    re.compile(r"\b(?:location|position) of (?:the |an? )?(?P<obj>.+?)" + _IN_PICTURE + r"\??$", re.I),
    re.compile(r"^\s*where (?:is|are) (?:the |an? )?(?P<obj>.+?)(?: located)?" + _IN_PICTURE + r"\??$", re.I),
)  # fmt: skip
_SCENE = re.compile(r"\b(theme|scene|what (?:kind|type) of (?:area|place|scene|land))\b", re.I)
_COUNT = re.compile(r"^\s*(?:how many|what is the number of)\b", re.I)
_LOCATION = re.compile(r"\b(where|location|located|position)\b", re.I)
_COMPARISON = re.compile(
    r"\b(more|less|fewer|greater|smaller|larger|bigger|than|equal|as many|same number)\b", re.I
)
_AREA = re.compile(r"\b(what is the area|area covered|area of|square met(?:er|re)s|m2)\b", re.I)
_RURAL_URBAN = re.compile(r"\b(rural|urban)\b", re.I)
_CHANGE = re.compile(
    r"\b(chang(?:e|ed|es)|appeared|disappeared|new(?:ly)? built|demolished|before and after)\b",
    re.I,
)
_YES_NO = re.compile(r"^\s*(is|are|does|do|did|can|could|has|have|was|were|will|should)\b", re.I)


def question_kind(question: str) -> str:
    """The kind of a question from its wording: one of ``KINDS``.

    >>> question_kind("Are there more buildings than roads?")
    'comparison'
    >>> question_kind("How many cars in the picture?")
    'count'
    >>> question_kind("What changed between the two images?")
    'change'
    """
    q = " ".join(str(question).strip().split())
    asks_to_compare = _YES_NO.search(q) or q.lower().startswith(("which", "what is more"))
    if _COMPARISON.search(q) and asks_to_compare and not _COUNT.search(q):
        return "comparison"
    if _COUNT.search(q):
        return "count"
    if _AREA.search(q):
        return "area"
    if _RURAL_URBAN.search(q):
        return "rural_urban"
    if _CHANGE.search(q):
        return "change"
    if _LOCATION.search(q):
        return "location"
    if any(p.search(q) for p in _PRESENCE):
        return "presence"
    if _SCENE.search(q):
        return "scene"
    if _YES_NO.search(q):
        return "yes_no"
    return "other"


def presence_object(question: str) -> str | None:
    """The object of a presence question ("is there a river?" -> "river"), else None."""
    for p in _PRESENCE:
        m = p.search(question.strip())
        if m:
            return m.group("obj").strip().rstrip("?. ")
    return None


def question_object(question: str) -> str | None:
    """The object a presence, count or location question asks about, else None.

    >>> question_object("What is the location of the red cars in this picture?")
    'red cars'
    """
    q = " ".join(question.strip().split())
    kind = question_kind(q)
    if kind == "presence":
        return presence_object(q)
    patterns = {"count": (_COUNT_OBJECT,), "location": _LOCATION_OBJECT}.get(kind, ())
    for p in patterns:
        m = p.search(q)
        if m:
            return m.group("obj").strip().rstrip("?. ") or None
    return None
