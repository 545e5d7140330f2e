"""Retrieval-augmented answers from a knowledge base, with numbered citations (``skylens kb ask``).

The RS-RAG recipe (Wen et al., 2025) on a CPU and without reranker weights:

1. **Hybrid retrieval.** BM25 over the passages (``bm25s``), dense text similarity (the
   knowledge base's sentence space) and, for an image query, the image's embedding against the
   ``joint`` column (described images and passages). A georeferenced query image adds the
   nearest GeoNames place to the query words.
2. **Reciprocal-rank fusion** (Cormack et al., SIGIR 2009): ``sum 1 / (60 + rank)``.
3. **Cheap cross-feature rerank** of the fused candidates: the best sentence's cosine to the
   question (the sentence embedder sees question and sentence side by side, unlike the
   passage-level first stage), the share of the question's content words the passage holds,
   the image similarity for an image query, and the fused rank. The result is in [0, 1].
4. **Answer.** Extractive by default: the best supporting sentences, each cited ``[n]``. With a
   language model (``llm=``, e.g. ``gguf:smollm2``) the model phrases an answer from the cited
   passages only; an answer carrying numbers or names that no passage holds is discarded for
   the extractive one (a weak model's invention never reaches the user). When the best passage
   scores under ``ABSTAIN_BELOW``, or the question is not in English, the answer says it cannot
   answer from what the knowledge base holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skylens.errors import InputError, SkylensError
from skylens.knowledge.chunking import split_sentences
from skylens.knowledge.gazetteer import Place, nearest_place
from skylens.knowledge.store import KnowledgeBase
from skylens.models.answerer import check_question
from skylens.models.base import TextGenerator
from skylens.tasks.common import load_scene_rgb

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
CANDIDATES = 40  # per retriever, before fusion
RERANK_POOL = 20  # fused candidates that get the sentence-level rerank
#: rerank: evidence = weighted mean of best-sentence cosine, content-word overlap and (image
#: queries) image similarity; score = (1 - W_RANK) * evidence + W_RANK * fused rank share.
#: Set by reasoning, not fitted: semantic match first, exact words second, rank a tie-break.
W_SENTENCE, W_OVERLAP, W_IMAGE, W_RANK = 0.55, 0.30, 0.25, 0.10
ABSTAIN_BELOW = 0.35  # rerank score of the best passage under which the answer abstains
CANNOT = "I cannot answer that from what I have"
LLM_MAX_TOKENS = 96  # one or two sentences; each token costs ~0.1 s on a busy CPU
LLM_PASSAGES = 3  # passages shown to the language model at most
LLM_PASSAGE_WORDS = 90  # words of each passage shown (prompt cost on a CPU)
MIN_REPLY_SUPPORT = 0.6  # share of the reply's content words its cited passages must hold
STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being do does did "
    "what which who whom whose when where why how this that these those it its there their they "
    "them he she his her i me my we our you your can could should would will shall may might must "
    "has have had not no yes as than then so such about into over under between after before "
    "much many more most some any all each other image picture photo tell me please show".split()
)
#: frequent function words of languages a user might write in (Latin script); English above
FOREIGN_STOPWORDS = {
    "Spanish": {"el", "la", "los", "las", "de", "del", "que", "es", "en", "un", "una", "por", "qué", "dónde", "cuál", "está", "son"},
    "French": {"le", "la", "les", "des", "du", "est", "une", "que", "qui", "où", "quel", "quelle", "dans", "sont", "pour", "avec"},
    "German": {"der", "die", "das", "und", "ist", "ein", "eine", "nicht", "wo", "was", "welche", "sind", "mit", "auf", "für"},
    "Portuguese": {"o", "os", "as", "do", "da", "que", "é", "em", "um", "uma", "onde", "qual", "são", "não", "para"},
    "Italian": {"il", "lo", "gli", "della", "che", "è", "un", "una", "dove", "quale", "sono", "non", "per", "con"},
}  # fmt: skip
#: capitalised words a phrasing may open with that carry no fact
DISCOURSE_WORDS = frozenset(
    "based according answer passage passages question knowledge however also therefore "
    "sure certainly yes no".split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass
class Passage:
    """A retrieved passage; ``n`` is its citation number in the answer (1-based)."""

    n: int
    id: str
    kind: str
    source: str
    page: int
    chunk: int
    title: str
    text: str
    score: float  # rerank score in [0, 1]
    ranks: dict = field(default_factory=dict)  # retriever -> 1-based rank
    place: str = ""
    lat: float | None = None
    lon: float | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def citation(self) -> dict:
        return {"n": self.n, "source": self.source, "page": self.page, "chunk": self.chunk, "id": self.id, "score": round(self.score, 4)}  # fmt: skip


@dataclass
class RagAnswer:
    """An answer with the citations it rests on and every passage retrieved."""

    question: str
    answer: str
    supported: bool
    mode: str  # "extractive" or the language model's name
    confidence: float
    citations: list[dict]
    passages: list[Passage]
    place: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["passages"] = [p.to_dict() for p in self.passages]
        d["confidence"] = round(self.confidence, 4)
        return d


def content_words(text: str) -> set[str]:
    """Lower-case words minus stopwords, plural 's' stripped (a light stemmer)."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS or len(w) < 2:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def question_language(text: str) -> str:
    """``English`` or the name of the language the text looks written in (a cheap heuristic)."""
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.6:
        return "a non-Latin script"
    words = [w.lower() for w in _WORD.findall(text)]
    english = sum(w in STOPWORDS for w in words)
    best, hits = max(
        ((lang, sum(w in sw for w in words)) for lang, sw in FOREIGN_STOPWORDS.items()),
        key=lambda t: t[1],
    )
    return best if hits >= 2 and hits > english else "English"


@dataclass
class QueryImage:
    vector: np.ndarray
    place: Place | None
    label: str


def _image_query(kb: KnowledgeBase, image: str | Path | np.ndarray) -> QueryImage:
    if isinstance(image, np.ndarray):
        return QueryImage(kb.embedder.images([image])[0], None, "<array>")
    from skylens.knowledge.documents import _raster_centre

    rgb = load_scene_rgb(image, max_side=512)
    centre = _raster_centre(Path(image))
    place = None
    if centre:
        try:
            place = nearest_place(*centre)
        except SkylensError:
            place = None
    return QueryImage(kb.embedder.images([rgb])[0], place, str(image))


def _fuse(rankings: dict[str, list[tuple[str, float]]]) -> dict[str, tuple[float, dict]]:
    fused: dict[str, tuple[float, dict]] = {}
    for name, hits in rankings.items():
        for rank, (pid, _) in enumerate(hits, 1):
            score, ranks = fused.get(pid, (0.0, {}))
            fused[pid] = (score + 1.0 / (RRF_K + rank), {**ranks, name: rank})
    return fused


def _rerank(
    kb: KnowledgeBase, query: str, fused: dict, rows: dict, image_sims: dict
) -> list[Passage]:
    pool = sorted(fused, key=lambda i: -fused[i][0])[:RERANK_POOL]
    pool = [i for i in pool if i in rows]
    if not pool:
        return []
    sentences = [(pid, s) for pid in pool for s in split_sentences(rows[pid]["text"])[:12]]
    vecs = kb.embedder.texts([query] + [s for _, s in sentences])
    cos = vecs[1:] @ vecs[0]
    best_sentence: dict[str, float] = {}
    for (pid, _), c in zip(sentences, cos, strict=True):
        best_sentence[pid] = max(best_sentence.get(pid, -1.0), float(c))
    q_words = content_words(query)
    top_rrf = max(fused[i][0] for i in pool)
    out = []
    for pid in pool:
        row = rows[pid]
        overlap = len(q_words & content_words(f"{row['title']} {row['text']}")) / max(
            1, len(q_words)
        )
        sem = float(np.clip((best_sentence.get(pid, 0.0) - 0.1) / 0.6, 0, 1))
        img = float(np.clip((image_sims.get(pid, 0.0) - 0.1) / 0.6, 0, 1)) if image_sims else 0.0
        weights = W_SENTENCE + W_OVERLAP + (W_IMAGE if image_sims else 0.0)
        evidence = (W_SENTENCE * sem + W_OVERLAP * overlap + W_IMAGE * img) / weights
        raw = (1 - W_RANK) * evidence + W_RANK * fused[pid][0] / top_rrf
        out.append(
            Passage(0, pid, row["kind"], row["source"], int(row["page"]), int(row["chunk"]), row["title"],
                    row["text"], raw, fused[pid][1], row["place"] or "", row["lat"], row["lon"])
        )  # fmt: skip
    out.sort(key=lambda p: -p.score)
    return out


def retrieve(
    kb: KnowledgeBase,
    query: str,
    *,
    image: str | Path | np.ndarray | None = None,
    k: int = 5,
) -> tuple[list[Passage], QueryImage | None]:
    """The ``k`` best passages for ``query`` (and an optional query image), reranked, numbered.

    Raises:
        InputError: an empty query (without an image) or ``k`` < 1.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    query = (query or "").strip()
    if not query and image is None:
        raise InputError("empty query: give words, an image, or both")
    qimg = _image_query(kb, image) if image is not None else None
    words = query
    if qimg is not None and qimg.place is not None:
        words = f"{query} {qimg.place.name} {qimg.place.admin1} {qimg.place.country}".strip()
    rankings: dict[str, list[tuple[str, float]]] = {}
    if words:
        rankings["bm25"] = kb.bm25_search(words, CANDIDATES)
        rankings["dense"] = kb.vector_search(kb.embedder.texts([words])[0], CANDIDATES)
    image_sims: dict[str, float] = {}
    if qimg is not None:
        rankings["image"] = kb.vector_search(qimg.vector, CANDIDATES, column="joint")
        image_sims = dict(rankings["image"])
    fused = _fuse(rankings)
    rows = kb.rows(list(fused))
    passages = _rerank(kb, words or "", fused, rows, image_sims)[:k]
    for n, p in enumerate(passages, 1):
        p.n = n
    return passages, qimg


def search_kb(
    kb: KnowledgeBase | str | Path,
    query: str,
    *,
    image: str | Path | np.ndarray | None = None,
    k: int = 5,
    model=None,
) -> list[Passage]:
    """``skylens kb search``: the best passages (see :func:`retrieve`)."""
    kb = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb, model)
    return retrieve(kb, query, image=image, k=k)[0]


def _sentences_ranked(
    kb: KnowledgeBase, question: str, passages: list[Passage]
) -> list[tuple[float, Passage, str]]:
    cands = [
        (p, s)
        for p in passages[:3]
        for s in split_sentences(p.text)
        if len(s.split()) >= 3 and not s.startswith("#")  # a heading is a title, not a fact
    ]
    if not cands:
        return []
    vecs = kb.embedder.texts([question] + [s for _, s in cands])
    q_words = content_words(question)
    scored = []
    for (p, s), c in zip(cands, vecs[1:] @ vecs[0], strict=True):
        overlap = len(q_words & content_words(s)) / max(1, len(q_words))
        scored.append(
            (0.7 * float(c) + 0.3 * overlap + 0.05 * p.score, p, s.lstrip("#*- ").strip())
        )
    scored.sort(key=lambda t: -t[0])
    return scored


def extractive_answer(
    kb: KnowledgeBase, question: str, passages: list[Passage], place: Place | None
) -> tuple[str, list[Passage]]:
    """The best one or two supporting sentences, each followed by its citation ``[n]``."""
    parts, used = [], []
    if place is not None:
        parts.append(
            f"The image lies near {place.label()} ({place.distance_km} km from its centre; GeoNames)."
        )
    ranked = _sentences_ranked(kb, question, passages)
    for score, p, s in ranked[:2]:
        if parts and (score < ranked[0][0] - 0.08 or s in " ".join(parts)):
            continue
        parts.append(f"{s.rstrip('.')}. [{p.n}]")
        used.append(p)
    return " ".join(parts), used


def _evidence_tokens(text: str) -> set[str]:
    """Numbers and capitalised words: the facts a phrasing must not invent."""
    return {
        t.lower().replace(",", "") for t in re.findall(r"\b\d[\d,.]*\b|\b[A-Z][a-z]{2,}\b", text)
    }


def grounded(reply: str, passages: list[Passage], question: str) -> set[str]:
    """Numbers and names in ``reply`` found in neither the passages nor the question."""
    allowed = _evidence_tokens(" ".join(p.text + " " + p.title for p in passages) + " " + question)
    allowed |= {
        w.lower() for w in re.findall(r"\w+", " ".join(p.text for p in passages) + question)
    }
    reply = re.sub(r"\[\d+\]", " ", reply)  # citation marks are not facts
    return {
        t
        for t in _evidence_tokens(reply) - allowed
        if t not in STOPWORDS and t not in DISCOURSE_WORDS and t.rstrip(".") not in allowed
    }


_LLM_SYSTEM = (
    "Answer the question using only the numbered passages. Cite the passages you use as [1], [2]. "
    "Write one or two sentences. If the passages do not contain the answer, reply exactly: "
    "The knowledge base does not say."
)


def llm_passages(passages: list[Passage]) -> list[Passage]:
    """What the language model sees: at most ``LLM_PASSAGES`` passages that clear the abstain bar
    (a small model is easily led by an off-topic passage)."""
    return [p for p in passages if p.score >= ABSTAIN_BELOW][:LLM_PASSAGES] or passages[:1]


def llm_answer(
    llm: TextGenerator, question: str, passages: list[Passage], place: Place | None
) -> str:
    context = "\n".join(
        f"[{p.n}] {' '.join(p.text.split()[:LLM_PASSAGE_WORDS])}" for p in llm_passages(passages)
    )
    if place is not None:
        context = f"[image location] near {place.label()}\n" + context
    messages = [
        {"role": "system", "content": _LLM_SYSTEM},
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"},
    ]
    return str(llm.generate(messages, max_tokens=LLM_MAX_TOKENS, temperature=0.0)).strip()


def _cannot(question: str, why: str, passages: list[Passage], mode: str, place=None) -> RagAnswer:
    return RagAnswer(question, f"{CANNOT}: {why}", False, mode, 0.0, [], passages, place)


def answer_question(
    kb: KnowledgeBase | str | Path,
    question: str,
    *,
    image: str | Path | np.ndarray | None = None,
    llm: TextGenerator | str | None = None,
    k: int = 5,
    model=None,
) -> RagAnswer:
    """Answer ``question`` from the knowledge base with numbered citations (``kb ask``).

    Args:
        kb: a knowledge base or its folder.
        question: in English (other languages get an honest refusal).
        image: an optional query image (file or RGB array): retrieval adds its embedding and,
            when georeferenced, the place it shows.
        llm: a ``TextGenerator`` or its name (``gguf:smollm2``) that phrases the answer from the
            cited passages; None answers extractively.
        k: passages retrieved and returned.

    Raises:
        InputError: an empty or over-long question.
    """
    q = check_question(question)
    kb = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb, model)
    generator = None
    if llm is not None:
        from skylens.tasks.change import as_text_generator

        generator = as_text_generator(llm)
    mode = generator.name if generator is not None else "extractive"
    language = question_language(q)
    if language != "English":
        return _cannot(
            q,
            f"the question looks written in {language}; this knowledge base and its models work in English",
            [],
            mode,
        )
    passages, qimg = retrieve(kb, q, image=image, k=k)
    place = qimg.place if qimg is not None else None
    place_dict = place.to_dict() if place is not None else None
    best = passages[0].score if passages else 0.0
    if best < ABSTAIN_BELOW and place is None:
        why = "the knowledge base holds nothing close enough to the question"
        why += (
            f" (best passage score {best:.2f} < {ABSTAIN_BELOW})" if passages else " (it is empty)"
        )
        return _cannot(q, why, passages, mode, place_dict)
    text, used = extractive_answer(kb, q, passages, place)
    warnings: list[str] = []
    if generator is not None:
        text, used, warnings = _phrase(generator, q, passages, place, text, used)
    cites = [p.citation() for p in used]
    confidence = max([best] + ([1.0 - min(place.distance_km, 50) / 50] if place else []))
    return RagAnswer(q, text, True, mode, float(confidence), cites, passages, place_dict, warnings)


def _phrase(generator, q, passages, place, extractive, used):
    """The language model's phrasing, or the extractive answer when it invents or fails."""
    name = generator.name
    try:
        reply = llm_answer(generator, q, passages, place)
    except SkylensError as exc:
        return (
            extractive,
            used,
            [f"language model '{name}' failed ({exc}); extractive answer given"],
        )
    if not reply or "does not say" in reply.lower():
        return (
            f"The knowledge base does not say. Closest evidence: {extractive}",
            used,
            [f"'{name}' found no answer in the passages"],
        )
    invented = grounded(reply, passages, q)
    if invented:
        return (
            extractive,
            used,
            [
                f"'{name}' wrote words no passage holds ({', '.join(sorted(invented)[:5])}); extractive answer given"
            ],
        )
    by_n = {p.n: p for p in llm_passages(passages)}
    reply = re.sub(r"\[(\d+)\]", lambda m: m.group(0) if int(m.group(1)) in by_n else "", reply)
    reply = " ".join(reply.lstrip("#*- ").split())  # drop stray markup and unknown citations
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", reply)]
    used_llm = [by_n[n] for n in dict.fromkeys(cited) if n in by_n]
    if not used_llm:  # the model cited nothing: cite the passages the extractive answer rests on
        used_llm = used
        reply = reply + " " + " ".join(f"[{p.n}]" for p in used)
    words = (
        content_words(re.sub(r"\[\d+\]", " ", reply)) - content_words(q) - {"answer", "question"}
    )
    held = content_words(" ".join(p.title + " " + p.text for p in used_llm))
    support = len(words & held) / max(1, len(words))
    if support < MIN_REPLY_SUPPORT:
        why = (
            f"'{name}' wrote an answer its cited passages do not hold ({support:.0%} of its words)"
        )
        return extractive, used, [why + "; extractive answer given"]
    return reply, used_llm, []
