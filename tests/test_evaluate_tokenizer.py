"""The Python PTB tokenizer against the Java one coco-caption runs.

The expected outputs below were printed by pycocoevalcap's stanford-corenlp-3.4.1.jar
(``PTBTokenizer -preserveLines -lowerCase``) on these lines, fed as one file in this order.
"""

from __future__ import annotations

import shutil

import pytest

from skylens.evaluate.tokenizer import (
    COCO_PUNCTUATION,
    JavaPTBTokenizer,
    ptb_tokenize,
    ptb_tokens,
    tokenize_all,
)

JAVA_CASES = [
    ("Many buildings, and a road.", "many buildings , and a road ."),
    ("There is a piece of farmland .", "there is a piece of farmland ."),
    (
        "It's a baseball field; the grass isn't green!",
        "it 's a baseball field ; the grass is n't green !",
    ),
    (
        "Two planes (white) are parked at the airport... next to [a] terminal {b}.",
        "two planes -lrb- white -rrb- are parked at the airport ... next to -lsb- a -rsb- "
        "terminal -lcb- b -rcb- .",
    ),
    (
        'A "big" house near St. Paul\'s church, etc.',
        "a `` big '' house near st. paul 's church , etc.",
    ),
    (
        "there are 3.5 km of road, 5,000 cars and 10:30 a.m. traffic",
        "there are 3.5 km of road , 5,000 cars and 10:30 a.m. traffic",
    ),
    (
        "the U.S. highway and tree-lined streets/avenues -- nice",
        "the u.s. highway and tree-lined streets/avenues -- nice",
    ),
    (
        "Cannot see the bird's-eye view of the 1990s city!!",
        "can not see the bird 's - eye view of the 1990s city !!",
    ),
    (
        "Some cars are parked in the lot: red, blue and white?",
        "some cars are parked in the lot : red , blue and white ?",
    ),
    # an initial keeps its period unless a common sentence opener follows (here: the next line)
    (
        "in the forest a there is a road in the form of V.",
        "in the forest a there is a road in the form of v .",
    ),
    ("The forest trees are very thick.", "the forest trees are very thick ."),
    ("many green trees form a piece of forest a.", "many green trees form a piece of forest a."),
    (
        "Winding roads can be seen clearly in the forest.",
        "winding roads can be seen clearly in the forest .",
    ),
    (
        "\u201cCurly\u201d quotes and \u2018single\u2019 ones \u2014 and a dash \u2013 too\u2026",
        "`` curly '' quotes and ` single ' ones -- and a dash -- too ...",
    ),
]


def test_tokens_match_the_java_tokenizer():
    lines = [c for c, _ in JAVA_CASES]
    for i, (line, want) in enumerate(JAVA_CASES):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        assert " ".join(ptb_tokens(line, following)) == want, line


def test_coco_punctuation_removal_keeps_the_quirks():
    # lower-cased bracket tokens survive coco-caption's upper-case punctuation list; "!!" too
    assert ptb_tokenize("Two planes (white), parked!!") == "two planes -lrb- white -rrb- parked !!"
    assert ptb_tokenize("Many buildings, and a road.") == "many buildings and a road"
    assert ptb_tokenize("...") == ""
    assert "." in COCO_PUNCTUATION and "-lrb-" not in COCO_PUNCTUATION


def test_tokenize_all_looks_at_the_next_caption():
    out = tokenize_all(["near the forest a.", "The trees.", "near the forest a.", "trees."])
    assert out == ["near the forest a", "the trees", "near the forest a.", "trees"]


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
def test_agrees_with_pycocoevalcap_ptbtokenizer():
    """The real pycocoevalcap PTBTokenizer (Java) on generated captions with punctuation."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = [c for c, _ in JAVA_CASES] + [
        "A residential area with houses arranged neatly .",
        "Lots of cars, trucks & buses; a 4-way intersection (busy).",
        "There's a dense forest -- and a river... It is 2.5 km long!",
        "the 'old' harbour's piers, e.g. pier no. 5, aren't used",
    ]
    coco = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    ours = tokenize_all(captions)
    assert [coco[i][0] for i in range(len(captions))] == ours
    assert JavaPTBTokenizer().tokenize(captions) == ours
