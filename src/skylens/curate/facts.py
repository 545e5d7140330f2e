"""Facts of an annotated image, in words: object counts, presence, and where objects are.

Shared by ``from-detections`` (count/presence captions and QA) and ``instruct`` (hierarchical
descriptions and conversations), so both state the same facts the same way. Location is the cell
of a 3 x 3 grid holding a box's centre (``top left`` ... ``centre`` ... ``bottom right``), the
wording of RSVQA/RSIVQA location questions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from skylens.curate.vocabulary import object_words

ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")


def location_word(bbox: Sequence[float], width: int, height: int) -> str:
    """Grid cell of a box centre: ``top left``, ``top``, ..., ``centre``, ..., ``bottom right``."""
    cx = (bbox[0] + bbox[2]) / 2 / max(width, 1)
    cy = (bbox[1] + bbox[3]) / 2 / max(height, 1)
    row = ROWS[min(2, max(0, int(cy * 3)))]
    col = COLS[min(2, max(0, int(cx * 3)))]
    if row == "middle" and col == "centre":
        return "centre"
    if row == "middle":
        return col
    if col == "centre":
        return row
    return f"{row} {col}"


def counts(objects: Iterable[Mapping[str, Any]]) -> Counter:
    """Object class -> count."""
    return Counter(o["name"] for o in objects)


def where(objects: Sequence[Mapping[str, Any]], name: str, width: int, height: int) -> list[str]:
    """Grid cells holding objects of class ``name``, most populated first."""
    cells = Counter(location_word(o["bbox"], width, height) for o in objects if o["name"] == name)
    return [c for c, _ in cells.most_common()]


def number_words(n: int) -> str:
    """``n`` as digits (captions and answers keep numbers checkable)."""
    return str(n)


def count_phrase(name: str, n: int) -> str:
    """``3 ships``, ``1 harbour``."""
    return f"{number_words(n)} {object_words(name, n)}"


def list_phrase(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def count_caption(objects: Sequence[Mapping[str, Any]], platform: str = "an aerial image") -> str:
    """``An aerial image with 3 ships and 1 harbour.`` (most frequent class first)."""
    c = counts(objects)
    if not c:
        return f"{platform[:1].upper() + platform[1:]} with no annotated objects."
    parts = [count_phrase(n, k) for n, k in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
    return f"{platform[:1].upper() + platform[1:]} with {list_phrase(parts)}."


def location_phrase(cells: Sequence[str]) -> str:
    """``in the top left``, ``in the top left and centre``, ``all over the image``."""
    if len(cells) >= 5:
        return "all over the image"
    words = [c if c != "centre" else "centre" for c in cells[:3]]
    return "in the " + list_phrase(words)
