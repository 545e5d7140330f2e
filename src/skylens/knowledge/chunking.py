"""Split page text into overlapping chunks of whole sentences, each with a stable id.

A chunk is at most ``max_words`` words of consecutive sentences; the next chunk starts
``overlap`` sentences before the previous one ended, so a fact that straddles a boundary is
whole in at least one chunk. A sentence longer than ``max_words`` is cut into word windows.

Ids are content hashes (source + page + text), so rebuilding or re-adding the same document
gives the same ids and ``kb add`` skips what is already stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from skylens.errors import InputError

MAX_WORDS = 120  # ~160 MiniLM word pieces: inside its 256-piece window with room to spare
OVERLAP_SENTENCES = 1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\s*\n\s*")


@dataclass(frozen=True)
class Chunk:
    """A piece of a page: ``index`` counts chunks within the page from 0."""

    id: str
    source: str
    page: int
    index: int
    text: str
    title: str = ""


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; every line break also ends one (headings, list items, paragraphs)."""
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


def chunk_id(source: str, page: int, text: str) -> str:
    return hashlib.sha1(f"{source}\x1f{page}\x1f{text}".encode()).hexdigest()[:16]


def _windows(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    step = max(1, max_words - max_words // 5)  # 20 % word overlap inside an over-long sentence
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words) - max_words // 5, step)]


def chunk_text(
    text: str,
    *,
    source: str,
    page: int = 1,
    title: str = "",
    max_words: int = MAX_WORDS,
    overlap: int = OVERLAP_SENTENCES,
) -> list[Chunk]:
    """Overlapping sentence chunks of one page.

    Args:
        text: the page text.
        source, page, title: carried into every chunk.
        max_words: words per chunk at most (> 0).
        overlap: sentences repeated from the end of the previous chunk (>= 0).
    """
    if max_words < 1 or overlap < 0:
        raise InputError(f"max_words must be >= 1 and overlap >= 0, got {max_words}, {overlap}")
    sentences = [w for s in split_sentences(text) for w in _windows(s, max_words)]
    chunks: list[Chunk] = []
    start = 0
    while start < len(sentences):
        end, words = start, 0
        while end < len(sentences) and (
            end == start or words + len(sentences[end].split()) <= max_words
        ):
            words += len(sentences[end].split())
            end += 1
        body = "\n".join(sentences[start:end])  # line breaks keep headings apart from sentences
        chunks.append(Chunk(chunk_id(source, page, body), source, page, len(chunks), body, title))
        if end >= len(sentences):
            break
        back = max(start + 1, end - overlap)
        carried = sum(len(s.split()) for s in sentences[back:end])
        # overlap only when the carried sentences leave room for new ones
        start = back if carried + len(sentences[end].split()) <= max_words else end
    return chunks
