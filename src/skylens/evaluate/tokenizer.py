"""Caption tokenisation as coco-caption does it, in Python (no Java).

The MS-COCO caption evaluation code (Chen et al. 2015, "Microsoft COCO Captions: Data Collection
and Evaluation Server", arXiv:1504.00325; the ``pycocoevalcap`` package) tokenises every candidate
and reference with Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` (a Java
process) and then drops the punctuation tokens ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - --
... ;``. Every published BLEU/METEOR/ROUGE-L/CIDEr number went through that step, so a metric
that tokenised differently would not be comparable.

:func:`ptb_tokenize` reproduces that pipeline with regular expressions. Checked token for token
against the Java tokenizer: identical after punctuation removal on all 91,735 caption sentences of
UCM-Captions, RSICD, RSITMD and Sydney-Captions, and on 99.98 % of a seeded punctuation-heavy
rewrite of them (quotes, brackets, clitics, numbers, dashes; see ``bench/bench_metrics.py`` and
``bench/results/metrics.json``). Behaviours reproduced, including the quirks:

* lower-casing happens *after* tokenisation, so the bracket tokens become ``-lrb-``, ``-rrb-``,
  ``-lsb-``, ``-rsb-``, ``-lcb-``, ``-rcb-`` and, being lower case, survive the punctuation filter
  (coco-caption's list is upper case);
* clitics are split (``don't`` -> ``do n't``, ``can't`` -> ``ca n't``, ``it's`` -> ``it 's``,
  ``bird's-eye`` -> ``bird 's - eye``, ``'tis`` -> ``'t is``, ``cannot`` -> ``can not``,
  ``gonna`` -> ``gon na``);
* a final period is split off a word unless the word is an abbreviation the Java lexer knows
  (``st.``, ``etc.``, ``mr.``, ``e.g.``, ``no.`` before a number) or an initial (``a.``, ``B.``)
  that is not followed by a common sentence opener ("The", "There", "It", ...). coco-caption
  tokenises all captions as one file, so for the last word of a caption that opener is the first
  word of the *next* caption: :func:`tokenize_all` passes it along the same way;
* a word keeps its period before ``,``/``;``/``:`` (``farmland.,`` -> ``farmland. ,``, ``5.,`` -> ``5. ,``);
* runs of ``!``/``?`` stay one token (``!!`` is therefore *kept*, as in coco-caption), three or more
  periods become ``...``, dashes become ``--``;
* numbers keep their inner ``.``/``,``/``:``/``/`` (``3.5``, ``5,000``, ``10:30``, ``1/2``), words
  keep inner hyphens, slashes and periods (``tree-lined``, ``a/b``, ``airport.two``);
* currency and entity normalisation (``£`` -> ``#``, ``€`` -> ``$``, ``&amp;`` -> ``&``, curly
  quotes to straight ones, ``…`` -> ``...``, ``–``/``—`` -> ``--``).

Known differences from the Java lexer (all rare in captions): abbreviations outside the list
below; quoted words starting like a clitic (Java: ``'emerald'`` -> ``'em erald``);
``rock'n'roll``-style inner clitics; SGML/HTML markup, phone numbers and other multi-word
tokens; emoticons; punctuation glued to a following digit (Java: ``trees,5`` -> ``trees ,5``).
:class:`JavaPTBTokenizer` runs the real thing when exact parity matters and Java is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from skylens.errors import MissingDependencyError

#: Tokens coco-caption removes after PTB tokenisation (``pycocoevalcap/tokenizer/ptbtokenizer.py``).
#: Upper-case bracket names never match after ``-lowerCase``; that quirk is part of the protocol.
COCO_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-"]
    + [".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Words the CoreNLP 3.4.1 lexer keeps with their final period (found by feeding it
# "there is W. and" for candidate words; the rest lose the period).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr drs prof st ave blvd rd mt ft jr sr inc corp co ltd dept univ assn bros etc
    vs est sq jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs
    fri calif ariz ala colo conn fla ga ind kan kans ky md mich minn mo mont neb nev okla tenn va
    vt wis wyo gen gov sen rep reps capt col lt sgt cmdr adm messrs mme mlle esq al cf tel ext
    ct""".split()
)

# An initial ("a.", "B.") loses its period only before one of these words, found by probing the
# lexer with the 387 most frequent caption-initial and function words (others keep "b.").
_SENTENCE_STARTERS = frozenset(
    """A After An As At But He Her Here However If In It Many More Now One Other Our She Since So
    Some Such That The Their Then There These They This We What When While Yet You""".split()
)

# Single-token rewrites the lexer applies to whole words (lower-cased key).
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "lemme": ("lem", "me"),
    "gimme": ("gim", "me"),
}

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

_CHAR_MAP = str.maketrans(
    {
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u00a3": "#",  # pound sign: PTB's normalizeCurrency
        "\u20ac": "$",  # euro sign
        "\u00a0": " ",  # no-break space
        "\t": " ",
        "\r": " ",
        "\n": " ",
    }
)
_FRACTIONS = {"\u00bd": "1/2", "\u00bc": "1/4", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}

# One token at the start of a whitespace-free chunk, tried in order.
_TOKEN = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)\S+)
  | (?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
  | (?P<tag>[#@][^\W\d_]\w*)
  | (?P<sgml></?[A-Za-z][^<>\s]*>)
  | (?P<tis>(?i:'t(?:is|was))(?!\w))
  | (?P<acronym>[A-Za-z](?:\.[A-Za-z])+\.?(?!\w))
  | (?P<initial>[A-Za-z]\.)(?![\w])
  | (?P<amp>[A-Z]+&[A-Z]+)
  | (?P<decade>'\d\ds?)(?![\w])
  | (?P<number>-?(?:\d+(?:[.,:/]\d+)*|\.\d+)(?:[-/]\w+)*(?=[^\w']|$))
  | (?P<word>\w+(?:[-/.']\w+)*'?)
  | (?P<ellipsis>\.{3,})
  | (?P<bangs>[!?]+)
  | (?P<dashes>-{2,})
  | (?P<ticks>``|'')
  | (?P<other>.)
    """,
    re.VERBOSE,
)
_HYPHENATED_CLITIC = re.compile(r"^(\w+?)(n't|'s|'m|'d|'re|'ve|'ll)([-/])(.+)$", re.IGNORECASE)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$", re.IGNORECASE)
_ABBREV_DOT = re.compile(r"^([A-Za-z]+)\.(?![\w])")
_NUMBER_ABBREV = re.compile(r"^no\.(?=\d)", re.IGNORECASE)


def _normalise(text: str) -> str:
    text = text.translate(_CHAR_MAP).replace("&amp;", "&")
    text = text.replace("\u2026", "...").replace("\u2014", " -- ").replace("\u2013", " -- ")
    for frac, ascii_frac in _FRACTIONS.items():
        text = text.replace(frac, ascii_frac)
    return text


def _split_word(word: str) -> list[str]:
    """Clitics and the lexer's whole-word rewrites, on one word token."""
    lowered = word.lower()
    if lowered in _SPLIT_WORDS:
        first, second = _SPLIT_WORDS[lowered]
        return [word[: len(first)], word[len(first) :]]
    if word.endswith("'") and len(word) > 1:
        return [*_split_word(word[:-1]), "'"]
    if word.startswith("'"):
        return ["`", *_split_word(word[1:])] if len(word) > 1 else ["'"]
    m = _HYPHENATED_CLITIC.match(word)
    if m:  # "bird's-eye" -> bird 's - eye; "it's/wide" -> it 's / wide
        return [m.group(1), m.group(2), m.group(3), *_split_word(m.group(4))]
    m = _CLITIC.match(word)
    if m and m.group(1) and m.group(1)[-1].isalnum():
        return [*_split_word(m.group(1)), m.group(2)]  # "there's's" -> there 's 's
    return [word]


def _tokenize_chunk(chunk: str, next_chunk: str) -> list[str]:
    out: list[str] = []
    pos = 0
    n = len(chunk)
    while pos < n:
        rest = chunk[pos:]
        # An abbreviation keeps its period: "st." "etc." and "no." before a number.
        m = _NUMBER_ABBREV.match(rest)
        if m:
            out.append(m.group(0))
            pos += m.end()
            continue
        m = _ABBREV_DOT.match(rest)
        if m:
            stem = m.group(1).lower()
            after = rest[m.end() :] or next_chunk
            if stem in _ABBREVIATIONS or (stem == "no" and after[:1].isdigit()):
                out.append(m.group(0))
                pos += m.end()
                continue
        m = _TOKEN.match(chunk, pos)
        assert m is not None  # the last alternative matches any character
        kind, tok = m.lastgroup, m.group(0)
        pos = m.end()
        if (
            kind in ("word", "number")
            and chunk[pos : pos + 1] == "."
            and (chunk[pos + 1 : pos + 2] in (",", ";", ":"))
        ):
            tok, pos = tok + ".", pos + 1  # the lexer keeps "farmland." and "5." before , ; :
        if kind == "initial" and not chunk[pos:] and next_chunk in _SENTENCE_STARTERS:
            # "forest a. The ...": an initial before a common sentence opener ends the sentence.
            out.extend([tok[0], "."])
        elif kind == "word":
            out.extend(_split_word(tok))
        elif kind == "ellipsis":
            out.append("...")
        elif kind == "tis":
            out.extend([tok[:2], tok[2:]])
        elif kind == "dashes":
            out.append("--")
        elif kind == "other":
            # Quotes become `` '' ` ' (opening at a chunk start); all four are then removed.
            if tok == '"':
                out.append("``" if pos == 1 else "''")
            elif tok == "'":
                out.append("`" if pos == 1 else "'")
            else:
                out.append(_BRACKETS.get(tok, tok))
        else:
            out.append(tok)
    return out


def ptb_tokens(text: str, next_text: str = "") -> list[str]:
    """PTB tokens of one sentence, lower-cased, before punctuation removal.

    Args:
        text: one caption (newlines are treated as spaces, as coco-caption does).
        next_text: the caption that follows in the same tokenizer run. coco-caption writes all
            captions into one file, and the lexer looks past the line end: an initial such as
            ``a.`` keeps its period unless the next caption starts with a capital letter.

    Returns:
        The tokens the CoreNLP ``PTBTokenizer -preserveLines -lowerCase`` would print.
    """
    chunks = _normalise(text).split()
    following = _normalise(next_text).split()[:1] or [""]
    tokens: list[str] = []
    for i, chunk in enumerate(chunks):
        if (chunk.isalpha() and chunk.lower() not in _SPLIT_WORDS) or (
            chunk.isdigit() and chunk.isascii()
        ):
            tokens.append(chunk)  # fast path: most caption words
            continue
        nxt = chunks[i + 1] if i + 1 < len(chunks) else following[0]
        tokens.extend(_tokenize_chunk(chunk, nxt))
    return [t.lower() for t in tokens]


def ptb_tokenize(text: str, next_text: str = "") -> str:
    """One caption tokenised exactly as coco-caption feeds it to BLEU/METEOR/ROUGE-L/CIDEr.

    PTB tokenisation, lower case, punctuation tokens removed, tokens joined by single spaces.
    ``next_text`` is the caption after it in the same run (see :func:`ptb_tokens`).

    >>> ptb_tokenize("Many buildings, and a road.")
    'many buildings and a road'
    """
    return " ".join(t for t in ptb_tokens(text, next_text) if t not in COCO_PUNCTUATION)


def tokenize_all(texts: Sequence[str]) -> list[str]:
    """:func:`ptb_tokenize` over captions in the order coco-caption's one Java run sees them."""
    return [
        ptb_tokenize(t, texts[i + 1] if i + 1 < len(texts) else "") for i, t in enumerate(texts)
    ]


class JavaPTBTokenizer:
    """The reference: pycocoevalcap's Stanford CoreNLP 3.4.1 PTBTokenizer run through Java.

    Used to check :func:`ptb_tokenize` and when byte-exact parity with coco-caption matters.
    Unlike pycocoevalcap's wrapper it writes its temporary file outside site-packages and pipes
    each caption on its own line.
    """

    def __init__(self, java: str | None = None, timeout_s: float = 600.0) -> None:
        self.java = java or shutil.which("java")
        self.jar = _coco_file("tokenizer", "stanford-corenlp-3.4.1.jar")
        self.timeout_s = timeout_s
        if self.java is None:
            raise MissingDependencyError(
                "the Java PTB tokenizer needs a Java runtime on PATH (e.g. apt install "
                "default-jre-headless); the built-in Python tokenizer needs none"
            )
        if self.jar is None:
            raise MissingDependencyError(
                "pycocoevalcap's stanford-corenlp-3.4.1.jar was not found: pip install 'skylens[eval]'"
            )

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Raw PTB tokens per caption (lower-cased, punctuation kept)."""
        if not texts:
            return []
        body = "\n".join(t.replace("\n", " ").replace("\r", " ") for t in texts)
        with tempfile.TemporaryDirectory(prefix="skylens-ptb-") as tmp:
            src = Path(tmp) / "captions.txt"
            src.write_text(body, encoding="utf-8")
            proc = subprocess.run(
                [
                    self.java,
                    "-cp",
                    str(self.jar),
                    "edu.stanford.nlp.process.PTBTokenizer",
                    "-preserveLines",
                    "-lowerCase",
                    "-encoding",
                    "utf-8",
                    str(src),
                ],
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"Java PTBTokenizer failed (exit {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace')[-500:]}"
            )
        lines = proc.stdout.decode("utf-8").split("\n")
        return [line.split() for line in lines[: len(texts)]] + [
            [] for _ in range(len(texts) - len(lines))
        ]

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        """Captions as coco-caption's ``PTBTokenizer.tokenize`` returns them (punctuation removed)."""
        return [
            " ".join(t for t in toks if t not in COCO_PUNCTUATION) for toks in self.tokens(texts)
        ]


def _coco_file(*parts: str) -> Path | None:
    """A file inside the installed pycocoevalcap package, or None."""
    try:
        import pycocoevalcap
    except ImportError:
        return None
    for root in getattr(pycocoevalcap, "__path__", []):
        path = Path(root, *parts)
        if path.is_file():
            return path
    return None
