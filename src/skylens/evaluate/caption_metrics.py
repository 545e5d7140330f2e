"""BLEU-1..4, ROUGE-L and CIDEr-D as coco-caption computes them, in Python; METEOR and SPICE
through coco-caption's Java jars when they can run.

Every image-captioning paper (and every remote-sensing captioning paper: UCM-Captions, Sydney,
RSICD, NWPU-Captions, LEVIR-CC) reports the scores of the MS-COCO caption evaluation code
(``pycocoevalcap``; Chen et al. 2015, arXiv:1504.00325). These functions take the same tokenised
input (see :mod:`skylens.evaluate.tokenizer`) and reproduce its numbers, quirks included:

* **BLEU** (Papineni et al. 2002): corpus-level, clipped n-gram precision accumulated over all
  sentences, geometric mean of orders 1..n, brevity penalty with the *closest* reference length
  per sentence (the shorter on a tie), and coco-caption's smoothing constants (``1e-15`` added to
  matches, ``1e-9`` to counts) so an order with no match gives ~0, not an error.
* **ROUGE-L** (Lin 2004): per sentence, the longest common subsequence with each reference;
  F-measure from the *best* precision and *best* recall over references with beta = 1.2; the
  corpus score is the mean over sentences. The LCS is computed bit-parallel (Hyyrö 2004) on Python
  integers instead of coco-caption's O(n*m) table.
* **CIDEr-D** (Vedantam et al. 2015): TF-IDF weighted n-grams (n = 1..4), IDF from the reference
  sets of the evaluated corpus (so the score depends on the corpus), clipped cosine similarity,
  Gaussian length penalty with sigma = 6, times 10, averaged over references and n. As in
  coco-caption, the "length" in the penalty counts the sentence's bigrams (its length minus one).
* **METEOR 1.5** (Denkowski & Lavie 2014) and **SPICE** (Anderson et al. 2016) are Java programs;
  they run through pycocoevalcap's wrappers when Java and the jars are there, and are otherwise
  reported unavailable with the reason.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence

import numpy as np

from skylens.errors import InputError
from skylens.evaluate.tokenizer import _coco_file

Tokens = Sequence[str]
NGram = tuple[str, ...]


def ngram_counts(tokens: Tokens, n: int = 4) -> Counter[NGram]:
    """Counts of all 1..n-grams of a token list."""
    toks = tuple(tokens)
    counts: Counter[NGram] = Counter((t,) for t in toks)
    for k in range(2, n + 1):
        counts.update(zip(*(toks[i:] for i in range(k)), strict=False))
    return counts


class NGramTable:
    """All 1..n-gram counts of a corpus as flat arrays, shared by BLEU and CIDEr-D.

    Sentences are numbered hypotheses first (``0..H-1``), then references in order; each entry
    is one distinct n-gram of one sentence: ``sentence``, ``gram`` (an id), ``tf`` (its count).
    """

    def __init__(
        self, hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]], n: int = 4
    ) -> None:
        _check_pairs(hypotheses, references)
        self.n = n
        self.n_hyp = len(hypotheses)
        self.ref_image = np.repeat(np.arange(len(references)), [len(r) for r in references])
        sentences = [*hypotheses, *(r for refs in references for r in refs)]
        self.length = np.array([len(s) for s in sentences], np.int64)
        vocab: dict[str, int] = dict.fromkeys(itertools.chain.from_iterable(sentences), 0)
        for i, tok in enumerate(vocab):
            vocab[tok] = i + 1  # 1-based: 0 never occurs inside a code
        base = len(vocab) + 1
        if base**n < 2**62:
            self._build_numeric(sentences, vocab, base)
        else:  # an enormous vocabulary: n-gram codes would overflow int64
            self._build_python(sentences)
        self.is_hyp = self.sentence < self.n_hyp
        # the image (sample) each entry belongs to
        self.image = np.where(
            self.is_hyp, self.sentence, self.ref_image[np.maximum(self.sentence - self.n_hyp, 0)]
        )

    def _build_numeric(self, sentences, vocab: dict[str, int], base: int) -> None:
        """n-grams as base-``base`` integer codes of 1-based token ids: one code per n-gram, and
        codes of different orders fall in disjoint ranges ``[base**(k-1), base**k)``."""
        n = self.n
        lens = np.array([len(s) for s in sentences], np.int64)
        toks = np.fromiter(
            map(vocab.__getitem__, itertools.chain.from_iterable(sentences)), np.int64, lens.sum()
        )
        sent_of = np.repeat(np.arange(len(sentences)), lens)
        room = np.repeat(lens, lens) - (
            np.arange(len(toks)) - np.repeat(np.cumsum(lens) - lens, lens)
        )
        sents, codes = [], []
        code = np.zeros(len(toks), np.int64)
        for k in range(1, n + 1):
            valid = room[: len(toks) - k + 1] >= k
            code = code[: len(toks) - k + 1] * base + toks[k - 1 :]
            sents.append(sent_of[: len(toks) - k + 1][valid])
            codes.append(code[valid])
        sent, code = np.concatenate(sents), np.concatenate(codes)
        order = np.lexsort((code, sent))
        sent, code = sent[order], code[order]
        first = np.r_[True, (sent[1:] != sent[:-1]) | (code[1:] != code[:-1])] if len(sent) else []
        starts = np.flatnonzero(first)
        self.sentence = sent[starts]
        self.tf = np.diff(np.r_[starts, len(sent)]).astype(np.float64)
        uniq, self.gram = np.unique(code[starts], return_inverse=True)
        self.gram = self.gram.astype(np.int64).reshape(-1)
        self.n_grams = len(uniq)
        self.order = np.searchsorted(base ** np.arange(1, n + 1), uniq, side="right") + 1

    def _build_python(self, sentences) -> None:
        counts = [ngram_counts(toks, self.n) for toks in sentences]
        all_grams = list(itertools.chain.from_iterable(counts))
        ids: dict[NGram, int] = dict.fromkeys(all_grams, 0)
        for i, g in enumerate(ids):
            ids[g] = i
        self.n_grams = len(ids)
        self.order = np.fromiter(map(len, ids), np.int64, len(ids))
        self.sentence = np.repeat(np.arange(len(sentences)), [len(c) for c in counts])
        self.gram = np.fromiter(map(ids.__getitem__, all_grams), np.int64, len(all_grams))
        self.tf = np.fromiter(
            itertools.chain.from_iterable(c.values() for c in counts), np.float64, len(all_grams)
        )

    def hyp_lookup(self, image: np.ndarray, gram: np.ndarray, values: np.ndarray) -> np.ndarray:
        """For (image, gram) pairs, the hypothesis entry's ``values`` (0 where it has no such gram)."""
        h = self.is_hyp
        keys = self.image[h] * self.n_grams + self.gram[h]
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], values[h][order]
        want = image * self.n_grams + gram
        pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        found = (keys[pos] == want) if len(keys) else np.zeros(len(want), bool)
        return np.where(found, vals[pos] if len(keys) else 0.0, 0.0)


def bleu(
    hypotheses: Sequence[Tokens],
    references: Sequence[Sequence[Tokens]],
    n: int = 4,
    table: NGramTable | None = None,
) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n and per-sentence BLEU-1..n, as coco-caption's ``Bleu(n)``.

    Args:
        hypotheses: one token list per sample.
        references: per sample, one or more reference token lists.
        n: highest n-gram order.
        table: the corpus's :class:`NGramTable`, when already built (for CIDEr-D too).

    Returns:
        ``(corpus, per_sentence)``: ``corpus[k-1]`` is BLEU-k over the corpus (0..1), and
        ``per_sentence[k-1][i]`` BLEU-k of sample i alone.
    """
    t = table if table is not None and table.n >= n else NGramTable(hypotheses, references, n)
    tiny, small = 1e-15, 1e-9
    h, r = t.is_hyp, ~t.is_hyp
    # clip: the most times any one reference of the sample has the gram
    ref_keys = t.image[r] * t.n_grams + t.gram[r]
    order = np.argsort(ref_keys, kind="stable")
    keys, tf = ref_keys[order], t.tf[r][order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], int)
    max_keys = keys[starts]
    max_tf = np.maximum.reduceat(tf, starts) if len(keys) else np.array([])
    want = t.image[h] * t.n_grams + t.gram[h]
    pos = np.minimum(np.searchsorted(max_keys, want), max(len(max_keys) - 1, 0))
    found = (max_keys[pos] == want) if len(max_keys) else np.zeros(len(want), bool)
    clip = np.where(found, max_tf[pos] if len(max_keys) else 0.0, 0.0)
    matched = np.minimum(t.tf[h], clip)
    keep = t.order[t.gram[h]] <= n
    correct = np.zeros((t.n_hyp, n))
    np.add.at(correct, (t.sentence[h][keep], t.order[t.gram[h]][keep] - 1), matched[keep])
    test_len = t.length[: t.n_hyp]
    guess = np.maximum(0, test_len[:, None] - np.arange(n)[None, :]).astype(np.float64)
    # closest reference length, the shorter one on a tie (coco-caption's "closest")
    ref_len_all = t.length[t.n_hyp :]
    diff = np.abs(ref_len_all - test_len[t.ref_image])
    ref_len = np.empty(t.n_hyp, np.int64)
    pick = np.lexsort((ref_len_all, diff, t.ref_image))
    first = np.r_[True, t.ref_image[pick][1:] != t.ref_image[pick][:-1]]
    ref_len[t.ref_image[pick][first]] = ref_len_all[pick][first]
    # per sentence
    prec = (correct + tiny) / (guess + small)
    cum = np.cumprod(prec, axis=1) ** (1.0 / np.arange(1, n + 1))[None, :]
    ratio = (test_len + tiny) / (ref_len + small)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    per_sentence = (cum * penalty[:, None]).T
    # corpus
    total_prec = (correct.sum(0) + tiny) / (guess.sum(0) + small)
    corpus_cum = np.cumprod(total_prec) ** (1.0 / np.arange(1, n + 1))
    ratio = (test_len.sum() + tiny) / (ref_len.sum() + small)
    corpus_pen = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    return [float(x) * corpus_pen for x in corpus_cum], [
        list(map(float, row)) for row in per_sentence
    ]


def lcs_length(a: Tokens, b: Tokens) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, Hyyrö 2004)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def rouge_l(
    hypotheses: Sequence[Tokens], references: Sequence[Sequence[Tokens]], beta: float = 1.2
) -> tuple[float, list[float]]:
    """Mean ROUGE-L F-score and per-sentence scores (0..1), as coco-caption's ``Rouge``.

    An empty token list counts as one empty token, as coco-caption's ``str.split(" ")`` does.
    """
    _check_pairs(hypotheses, references)
    scores = []
    for hyp, refs in zip(hypotheses, references, strict=True):
        cand = list(hyp) or [""]
        best_p = best_r = 0.0
        for ref in refs:
            r = list(ref) or [""]
            lcs = lcs_length(r, cand)
            best_p = max(best_p, lcs / len(cand))
            best_r = max(best_r, lcs / len(r))
        if best_p and best_r:
            scores.append((1 + beta**2) * best_p * best_r / (best_r + beta**2 * best_p))
        else:
            scores.append(0.0)
    return (sum(scores) / len(scores) if scores else 0.0), scores


def cider_d(
    hypotheses: Sequence[Tokens],
    references: Sequence[Sequence[Tokens]],
    n: int = 4,
    sigma: float = 6.0,
    table: NGramTable | None = None,
) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and per-sentence scores, as coco-caption's ``Cider`` (its CIDEr-D).

    IDF comes from the references given here; the corpus score is the mean over sentences.
    ``table`` is the corpus's :class:`NGramTable` when already built (it must hold n-grams up
    to exactly ``n``).
    """
    t = table if table is not None and table.n == n else NGramTable(hypotheses, references, n)
    n_img = t.n_hyp
    if n_img == 0:
        return 0.0, []
    r = ~t.is_hyp
    # document frequency: in how many samples' reference sets each n-gram occurs
    pairs = np.unique(t.image[r] * t.n_grams + t.gram[r])
    df = np.bincount(pairs % t.n_grams, minlength=t.n_grams).astype(np.float64)
    w = t.tf * (math.log(float(n_img)) - np.log(np.maximum(1.0, df[t.gram])))
    n_sent = len(t.length)
    slot = t.sentence * n + (t.order[t.gram] - 1)
    norm = np.sqrt(np.bincount(slot, w * w, minlength=n_sent * n)).reshape(n_sent, n)
    # coco-caption's "length" in the Gaussian penalty: the sentence's number of bigrams
    bigrams = np.bincount(t.sentence, t.tf * (t.order[t.gram] == 2), minlength=n_sent)
    # clipped dot product of each reference with its sample's hypothesis, per order
    w_hyp = t.hyp_lookup(t.image[r], t.gram[r], w)
    val = np.bincount(slot[r], np.minimum(w_hyp, w[r]) * w[r], minlength=n_sent * n)
    val = val.reshape(n_sent, n)[t.n_hyp :]
    ref_img = t.ref_image
    den = norm[ref_img] * norm[t.n_hyp :]
    val = np.where(den != 0, val / np.where(den != 0, den, 1.0), val)
    delta = bigrams[ref_img] - bigrams[t.n_hyp :]
    val *= np.exp(-(delta**2) / (2 * sigma**2))[:, None]
    per_ref = val.mean(axis=1)
    n_refs = np.bincount(ref_img, minlength=n_img)
    scores = np.bincount(ref_img, per_ref, minlength=n_img) / n_refs * 10.0
    return float(scores.mean()), [float(x) for x in scores]


def _check_pairs(hypotheses, references) -> None:
    if len(hypotheses) != len(references):
        raise InputError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    for i, refs in enumerate(references):
        if len(refs) == 0:
            raise InputError(f"sample {i} has no reference caption")


# ---------------------------------------------------------------------------------------------
# Java metrics


def java_status() -> tuple[str | None, str]:
    """``(path to java, "")`` if a Java runtime answers ``-version``, else ``(None, reason)``."""
    java = shutil.which("java")
    if java is None:
        return None, "no Java runtime on PATH (install one, e.g. apt install default-jre-headless)"
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"java did not start: {exc}"
    if proc.returncode != 0:
        return None, f"'java -version' failed: {proc.stderr.decode(errors='replace')[-200:]}"
    return java, ""


def meteor_unavailable_reason() -> str:
    """Why METEOR cannot run here, or "" when it can."""
    if _coco_file("meteor", "meteor-1.5.jar") is None:
        return "pycocoevalcap's meteor-1.5.jar is missing: pip install 'skylens[eval]'"
    java, reason = java_status()
    return "" if java else f"METEOR 1.5 is Java: {reason}"


def spice_unavailable_reason() -> str:
    """Why SPICE cannot run here, or "" when it can.

    SPICE needs Stanford CoreNLP 3.6.0 (about 400 MB), which pycocoevalcap downloads on first use;
    skylens never downloads at evaluation time.
    """
    if _coco_file("spice", "spice-1.0.jar") is None:
        return "pycocoevalcap's spice-1.0.jar is missing: pip install 'skylens[eval]'"
    for jar in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"):
        if _coco_file("spice", "lib", jar) is None:
            return (
                f"SPICE needs Stanford CoreNLP 3.6.0 ({jar} in pycocoevalcap/spice/lib/), which is "
                "not installed; fetch it once with network access: python -c 'from "
                "pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'"
            )
    java, reason = java_status()
    return "" if java else f"SPICE is Java: {reason}"


class MeteorScorer:
    """METEOR 1.5 through pycocoevalcap's ``Meteor`` (one Java process, reused across calls).

    Use as a context manager so the Java process is closed: ``with MeteorScorer() as m: ...``.
    """

    def __init__(self) -> None:
        reason = meteor_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = Meteor()

    def score(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> tuple[float, list[float]]:
        """Corpus METEOR (0..1, from the jar's aggregated statistics) and per-sentence scores.

        Inputs are tokenised strings (as coco-caption passes them); ``|||`` and newlines, which
        would break the jar's line protocol, are removed.
        """
        if not hypotheses:
            return 0.0, []
        clean = lambda s: " ".join(s.replace("|||", " ").split())  # noqa: E731
        gts = {i: [clean(r) for r in refs] for i, refs in enumerate(references)}
        res = {i: [clean(h)] for i, h in enumerate(hypotheses)}
        meteor = self._meteor
        try:
            score, scores = meteor.compute_score(gts, res)
        except Exception as exc:
            if meteor.lock.locked():
                meteor.lock.release()
            stderr = b""
            try:
                meteor.meteor_p.kill()
                stderr = meteor.meteor_p.stderr.read() or b""
            except Exception:  # pragma: no cover - best effort diagnostics
                pass
            raise RuntimeError(
                f"METEOR failed: {exc!r} {stderr.decode(errors='replace')[-300:]}"
            ) from exc
        return float(score), [float(s) for s in scores]

    def close(self) -> None:
        """Stop the Java process."""
        meteor, self._meteor = getattr(self, "_meteor", None), None
        if meteor is not None:
            proc = meteor.meteor_p
            try:
                proc.stdin.close()
            except Exception:  # pragma: no cover
                pass
            proc.kill()
            proc.wait()
            # pycocoevalcap's __del__ would now kill an exited process: harmless

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spice(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[float, list[float]]:
    """SPICE F-score (0..1) through pycocoevalcap's ``Spice``; raises when it cannot run."""
    reason = spice_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    from pycocoevalcap.spice.spice import Spice

    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [h] for i, h in enumerate(hypotheses)}
    score, scores = Spice().compute_score(gts, res)
    return float(score), [float(s["All"]["f"]) for s in scores]
