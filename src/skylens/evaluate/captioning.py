"""Caption evaluators: image captioning and change captioning (coco-caption metrics).

:class:`CaptionEvaluator` scores generated captions against reference captions with the
coco-caption protocol (tokenise with PTB rules and drop punctuation, then BLEU-1..4, METEOR,
ROUGE-L, CIDEr-D, SPICE; see :mod:`skylens.evaluate.caption_metrics`). Scores are on
coco-caption's scale: fractions in 0..1, CIDEr-D unbounded (about 0..10); papers often print
them times 100.

:class:`ChangeCaptionEvaluator` follows the LEVIR-CC protocol (Liu et al. 2022, "Remote Sensing
Image Change Captioning With Dual-Branch Transformers: A New Method and a Large Scale Dataset",
IEEE TGRS): the same metrics over all image pairs, and separately over the pairs that changed and
those that did not, each subset scored as its own corpus (CIDEr's IDF comes from that subset's
references, as running coco-caption on the subset does). It adds ``S*m``, the mean of BLEU-4,
METEOR, ROUGE-L and CIDEr-D that later change-captioning papers (e.g. Chg2Cap, Chang et al. 2023)
rank by.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from skylens.errors import InputError
from skylens.evaluate import caption_metrics as cm
from skylens.evaluate.base import Evaluator
from skylens.evaluate.tokenizer import JavaPTBTokenizer, tokenize_all

CAPTION_METRICS = ("BLEU", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
Tokenizer = Literal["ptb", "java", "none"]

Predictions = Sequence[str] | Mapping[Any, str]
References = Sequence[Sequence[str]] | Mapping[Any, Sequence[str]]


class CaptionEvaluator(Evaluator):
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE of generated captions (coco-caption scale).

    Args:
        metrics: any of ``BLEU`` (gives BLEU-1..4), ``METEOR``, ``ROUGE-L``, ``CIDEr``, ``SPICE``.
            METEOR and SPICE need Java (and SPICE the Stanford CoreNLP jars); when they cannot
            run their value is None and ``details["unavailable"]`` says why.
        tokenizer: ``ptb`` (Python replica of coco-caption's PTB tokenisation, default),
            ``java`` (coco-caption's own Java tokenizer), or ``none`` (captions are already
            tokenised: split on whitespace as-is).
        per_sample: also return each sample's scores under ``details["per_sample"]``.

    Call with ``(predictions, references)``: lists aligned by position (one caption per sample;
    a list of reference captions per sample) or dicts keyed by sample id.
    """

    task = "captioning"
    primary_metric = "CIDEr"
    greater_is_better = True
    units = "coco-caption scale: BLEU/METEOR/ROUGE-L/SPICE in 0..1, CIDEr-D about 0..10"

    def __init__(
        self,
        metrics: Sequence[str] = CAPTION_METRICS,
        *,
        tokenizer: Tokenizer = "ptb",
        per_sample: bool = False,
    ) -> None:
        self.metrics = _check_metrics(metrics)
        if tokenizer not in ("ptb", "java", "none"):
            raise InputError(f"tokenizer must be ptb, java or none, not {tokenizer!r}")
        self.tokenizer = tokenizer
        self.per_sample = per_sample

    def __call__(self, predictions: Predictions, references: References) -> dict[str, Any]:
        """Score ``predictions`` against ``references`` (see the class docstring)."""
        ids, hyps, refs = align_captions(predictions, references)
        hyp_tok, ref_tok = self.tokenize(hyps, refs)
        with _JavaMetrics(self.metrics) as java:
            metrics, unavailable, per_sample = score_tokenized(hyp_tok, ref_tok, self.metrics, java)
        details: dict[str, Any] = {"tokenizer": self.tokenizer, "unavailable": unavailable}
        if self.per_sample:
            details["per_sample"] = {"ids": ids, **per_sample}
        counts = {"samples": len(hyps), "references": sum(len(r) for r in refs)}
        return self._result(metrics, counts, details)

    def tokenize(
        self, hyps: Sequence[str], refs: Sequence[Sequence[str]]
    ) -> tuple[list[str], list[list[str]]]:
        """Tokenised hypotheses and references, in coco-caption's order (references, then
        hypotheses, each as one run)."""
        flat = [r for rs in refs for r in rs]
        if self.tokenizer == "none":
            flat_tok = [" ".join(r.split()) for r in flat]
            hyp_tok = [" ".join(h.split()) for h in hyps]
        elif self.tokenizer == "java":
            java = JavaPTBTokenizer()
            flat_tok, hyp_tok = java.tokenize(flat), java.tokenize(list(hyps))
        else:
            flat_tok, hyp_tok = tokenize_all(flat), tokenize_all(list(hyps))
        out, i = [], 0
        for rs in refs:
            out.append(flat_tok[i : i + len(rs)])
            i += len(rs)
        return hyp_tok, out


class ChangeCaptionEvaluator(Evaluator):
    """Change-caption metrics over all pairs and over the changed / unchanged subsets (LEVIR-CC).

    Args:
        metrics, tokenizer: as :class:`CaptionEvaluator`.

    Call with ``(predictions, references, changed)`` where ``changed[i]`` says whether pair i
    changed (LEVIR-CC's ``changeflag``). Without ``changed``, a pair counts as unchanged when
    all its references say so (:func:`is_no_change_caption`).

    Metric names: ``BLEU-4`` etc. over all pairs, ``change/BLEU-4`` and ``no_change/BLEU-4`` on
    the subsets, and ``S*m`` (mean of BLEU-4, METEOR, ROUGE-L, CIDEr) for each.
    """

    task = "change_captioning"
    primary_metric = "CIDEr"
    greater_is_better = True
    units = CaptionEvaluator.units

    def __init__(self, metrics: Sequence[str] = CAPTION_METRICS, *, tokenizer: Tokenizer = "ptb"):
        self._captions = CaptionEvaluator(metrics, tokenizer=tokenizer)

    def __call__(
        self,
        predictions: Predictions,
        references: References,
        changed: Sequence[bool] | Mapping[Any, bool] | None = None,
    ) -> dict[str, Any]:
        """Score change captions (see the class docstring)."""
        ids, hyps, refs = align_captions(predictions, references)
        if changed is None:
            flags = [not all(is_no_change_caption(r) for r in rs) for rs in refs]
            source = "inferred from the references"
        elif isinstance(changed, Mapping):
            missing = [i for i in ids if i not in changed]
            if missing:
                raise InputError(f"changed has no flag for sample ids {missing[:5]}")
            flags = [bool(changed[i]) for i in ids]
            source = "given"
        else:
            if len(changed) != len(hyps):
                raise InputError(f"{len(hyps)} predictions but {len(changed)} change flags")
            flags = [bool(c) for c in changed]
            source = "given"
        hyp_tok, ref_tok = self._captions.tokenize(hyps, refs)
        wanted = self._captions.metrics
        metrics: dict[str, float | None] = {}
        unavailable: dict[str, str] = {}
        with _JavaMetrics(wanted) as java:
            for prefix, keep in (("", None), ("change/", True), ("no_change/", False)):
                idx = [i for i, f in enumerate(flags) if keep is None or f == keep]
                if not idx:
                    names = _metric_names(wanted)
                    metrics.update({prefix + m: None for m in names + ["S*m"]})
                    unavailable.update(
                        {prefix + m: "no pair in this subset" for m in names + ["S*m"]}
                    )
                    continue
                sub, why, _ = score_tokenized(
                    [hyp_tok[i] for i in idx], [ref_tok[i] for i in idx], wanted, java
                )
                sub["S*m"] = _s_m(sub)
                if sub["S*m"] is None:
                    why["S*m"] = "needs BLEU-4, METEOR, ROUGE-L and CIDEr"
                metrics.update({prefix + k: v for k, v in sub.items()})
                unavailable.update({prefix + k: v for k, v in why.items()})
        counts = {
            "pairs": len(hyps),
            "changed": sum(flags),
            "unchanged": len(flags) - sum(flags),
            "references": sum(len(r) for r in refs),
        }
        details = {
            "tokenizer": self._captions.tokenizer,
            "change_flags": source,
            "unavailable": unavailable,
        }
        return self._result(metrics, counts, details)


_NO_CHANGE = re.compile(
    r"\b(no (obvious |significant |visible |apparent )?(change|changes|difference|differences)|"
    r"nothing (has )?(changed|change)|(almost |basically |completely |exactly )?(identical|"
    r"unchanged)|(is|are|remain|remains|seem|seems|looks?) (the )?same|same as before|"
    r"have not changed|has not changed|haven't changed|hasn't changed|did not change|"
    r"without (any )?change)\b",
    re.IGNORECASE,
)


def is_no_change_caption(caption: str) -> bool:
    """Whether a reference caption says nothing changed (LEVIR-CC's "there is no difference",
    "the two scenes seem identical", "no change has occurred")."""
    return bool(_NO_CHANGE.search(caption))


def align_captions(
    predictions: Predictions, references: References
) -> tuple[list[Any], list[str], list[list[str]]]:
    """``(ids, hypotheses, reference lists)`` from aligned lists or id-keyed dicts, validated."""
    if isinstance(predictions, Mapping) != isinstance(references, Mapping):
        raise InputError("give predictions and references both as lists or both as dicts")
    if isinstance(predictions, Mapping):
        assert isinstance(references, Mapping)
        missing = [k for k in predictions if k not in references]
        extra = [k for k in references if k not in predictions]
        if missing or extra:
            raise InputError(
                f"prediction and reference ids differ: {len(missing)} predictions have no "
                f"references (e.g. {missing[:3]}), {len(extra)} references no prediction "
                f"(e.g. {extra[:3]})"
            )
        ids = list(predictions)
        hyps = [predictions[k] for k in ids]
        refs = [references[k] for k in ids]
    else:
        hyps, refs = list(predictions), list(references)
        if len(hyps) != len(refs):
            raise InputError(f"{len(hyps)} predictions but {len(refs)} reference sets")
        ids = list(range(len(hyps)))
    out_refs = []
    for i, (h, rs) in zip(ids, zip(hyps, refs, strict=True), strict=False):
        if not isinstance(h, str):
            raise InputError(
                f"prediction for sample {i!r} must be a string, got {type(h).__name__}"
            )
        if isinstance(rs, str):
            rs = [rs]
        rs = list(rs)
        if not rs or not all(isinstance(r, str) for r in rs):
            raise InputError(f"sample {i!r} needs one or more reference captions (strings)")
        out_refs.append(rs)
    if not hyps:
        raise InputError("no captions to evaluate")
    return ids, hyps, out_refs


def score_tokenized(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    metrics: Sequence[str],
    java: _JavaMetrics | None = None,
) -> tuple[dict[str, float | None], dict[str, str], dict[str, list[float]]]:
    """Metrics over tokenised captions: ``(metrics, unavailable reasons, per-sample scores)``."""
    h_tok = [h.split() for h in hyps]
    r_tok = [[r.split() for r in rs] for rs in refs]
    out: dict[str, float | None] = {}
    why: dict[str, str] = {}
    per: dict[str, list[float]] = {}
    # one n-gram table for BLEU and CIDEr-D
    table = cm.NGramTable(h_tok, r_tok, 4) if {"BLEU", "CIDEr"} & set(metrics) else None
    for name in metrics:
        if name == "BLEU":
            corpus, sent = cm.bleu(h_tok, r_tok, 4, table=table)
            for k in range(4):
                out[f"BLEU-{k + 1}"] = corpus[k]
                per[f"BLEU-{k + 1}"] = sent[k]
        elif name == "ROUGE-L":
            out[name], per[name] = cm.rouge_l(h_tok, r_tok)
        elif name == "CIDEr":
            out[name], per[name] = cm.cider_d(h_tok, r_tok, table=table)
        else:  # METEOR, SPICE
            out[name] = None
            if java is None or java.reasons.get(name):
                why[name] = (java.reasons.get(name) if java else "") or "not run"
                continue
            try:
                out[name], per[name] = java.score(name, hyps, refs)
            except RuntimeError as exc:
                why[name] = str(exc)
    return out, why, per


class _JavaMetrics:
    """METEOR/SPICE for the duration of an evaluation: checks once, one METEOR process."""

    def __init__(self, metrics: Sequence[str]) -> None:
        self.reasons: dict[str, str] = {}
        self._meteor: cm.MeteorScorer | None = None
        if "METEOR" in metrics:
            self.reasons["METEOR"] = cm.meteor_unavailable_reason()
        if "SPICE" in metrics:
            self.reasons["SPICE"] = cm.spice_unavailable_reason()

    def score(self, name: str, hyps, refs) -> tuple[float, list[float]]:
        if name == "SPICE":
            try:
                return cm.spice(hyps, refs)
            except Exception as exc:  # a JVM or CoreNLP failure: report, do not crash
                raise RuntimeError(f"SPICE failed: {exc}") from exc
        if self._meteor is None:
            self._meteor = cm.MeteorScorer()
        return self._meteor.score(hyps, refs)

    def __enter__(self) -> _JavaMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._meteor is not None:
            self._meteor.close()


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    lookup = {m.lower(): m for m in CAPTION_METRICS}
    lookup.update({"rouge": "ROUGE-L", "rouge_l": "ROUGE-L", "cider-d": "CIDEr"})
    out = []
    for m in metrics:
        key = lookup.get(str(m).lower())
        if key is None:
            raise InputError(f"unknown caption metric {m!r}; choose from {list(CAPTION_METRICS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise InputError("no caption metric chosen")
    return tuple(out)


def _metric_names(metrics: Sequence[str]) -> list[str]:
    names = []
    for m in metrics:
        names += [f"BLEU-{k}" for k in range(1, 5)] if m == "BLEU" else [m]
    return names


def _s_m(m: Mapping[str, float | None]) -> float | None:
    parts = [m.get(k) for k in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")]
    return None if any(p is None for p in parts) else sum(parts) / 4  # type: ignore[arg-type]
