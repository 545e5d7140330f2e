"""Caption metrics: hand-checked values, agreement with pycocoevalcap, evaluators, change captions."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from skylens.errors import InputError
from skylens.evaluate import CaptionEvaluator, ChangeCaptionEvaluator, is_no_change_caption
from skylens.evaluate.caption_metrics import (
    bleu,
    cider_d,
    lcs_length,
    meteor_unavailable_reason,
    rouge_l,
    spice_unavailable_reason,
)

FAST = ("BLEU", "ROUGE-L", "CIDEr")
VOCAB = (
    "there is a are many some green trees buildings road roads river with and the near of in "
    "two white cars parked large small residential area houses field lake bridge beside"
).split()


def generated_pairs(n: int = 40, seed: int = 0) -> tuple[dict, dict]:
    """Seeded caption pairs in coco-caption's tokenised-dict form: {id: [refs]}, {id: [hyp]}."""
    rng = random.Random(seed)
    gts, res = {}, {}
    for i in range(n):
        refs = [
            " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 14)))
            for _ in range(rng.randint(1, 5))
        ]
        base = rng.choice(refs).split()
        hyp = [w for w in base if rng.random() > 0.3] + [
            rng.choice(VOCAB) for _ in range(rng.randint(0, 3))
        ]
        rng.shuffle(hyp) if rng.random() < 0.2 else None
        gts[i], res[i] = refs, [" ".join(hyp)]
    res[0] = [gts[0][0]]  # one exact copy
    res[1] = ["lake"]  # a one-word caption
    res[2] = [""]  # an empty one (a caption of punctuation only tokenises to this)
    return gts, res


def split(d: dict) -> list:
    return [[s.split() for s in d[k]] for k in sorted(d)]


def test_identical_captions_score_one():
    refs = [[["a", "green", "field", "beside", "the", "road"]]]
    hyp = [["a", "green", "field", "beside", "the", "road"]]
    corpus, _ = bleu(hyp, refs)
    assert corpus == pytest.approx([1.0] * 4)
    assert rouge_l(hyp, refs)[0] == pytest.approx(1.0)


def test_bleu_by_hand():
    # hyp "the cat the cat" vs ref "the cat is here": clipped unigrams 2/4, bigrams 1/3
    corpus, _ = bleu([["the", "cat", "the", "cat"]], [[["the", "cat", "is", "here"]]])
    assert corpus[0] == pytest.approx(0.5)
    assert corpus[1] == pytest.approx((0.5 * 1 / 3) ** 0.5)
    # brevity penalty: 2 words against a 4-word reference -> exp(1 - 4/2)
    corpus, _ = bleu([["the", "cat"]], [[["the", "cat", "is", "here"]]])
    assert corpus[0] == pytest.approx(2.718281828**-1, rel=1e-6)


def test_lcs_is_the_longest_common_subsequence():
    assert lcs_length("a b c d e".split(), "a c e".split()) == 3
    assert lcs_length("x y z".split(), "a b".split()) == 0
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4  # the CLRS example


def test_agrees_with_pycocoevalcap_on_generated_pairs():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = generated_pairs()
    hyps = [h[0] for h in split(res)]
    refs = split(gts)
    want_bleu, want_bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    got_bleu, got_bleu_each = bleu(hyps, refs)
    assert got_bleu == pytest.approx(want_bleu, abs=1e-6)
    for k in range(4):
        assert got_bleu_each[k] == pytest.approx(want_bleu_each[k], abs=1e-6)
    want_rouge, want_rouge_each = Rouge().compute_score(gts, res)
    got_rouge, got_rouge_each = rouge_l(hyps, refs)
    assert got_rouge == pytest.approx(want_rouge, abs=1e-6)
    assert got_rouge_each == pytest.approx(list(want_rouge_each), abs=1e-6)
    want_cider, want_cider_each = Cider().compute_score(gts, res)
    got_cider, got_cider_each = cider_d(hyps, refs)
    assert got_cider == pytest.approx(want_cider, abs=1e-6)
    assert got_cider_each == pytest.approx(list(want_cider_each), abs=1e-6)
    assert 0.05 < got_bleu[3] < 0.95 and 0.1 < got_cider < 9  # a non-trivial corpus


def test_huge_vocabulary_path_gives_the_same_scores(monkeypatch):
    """n-grams are integer codes unless the vocabulary is too large; both paths must agree."""
    from skylens.evaluate.caption_metrics import NGramTable

    gts, res = generated_pairs(25, seed=5)
    hyps, refs = [h[0] for h in split(res)], split(gts)
    numeric = bleu(hyps, refs), cider_d(hyps, refs)
    monkeypatch.setattr(
        NGramTable,
        "_build_numeric",
        lambda self, sentences, vocab, base: self._build_python(sentences),
    )
    python = bleu(hyps, refs), cider_d(hyps, refs)
    assert python[0][0] == pytest.approx(numeric[0][0], abs=1e-12)
    assert python[1][1] == pytest.approx(numeric[1][1], abs=1e-12)


def test_evaluator_matches_pycocoevalcap_end_to_end():
    """Raw captions with punctuation -> our tokenizer -> our metrics == coco scorers."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs = {
        "a": ["Many buildings, and a road.", "A road runs between buildings!", "Buildings."],
        "b": ["Two white planes (parked) at the airport.", "There are two planes."],
        "c": ["It's a green forest; dense trees.", "Many green trees.", "A forest."],
    }
    preds = {"a": "Many buildings near a road.", "b": "Two planes are parked.", "c": "A forest!"}
    ev = CaptionEvaluator(FAST, per_sample=True)
    got = ev(preds, refs)
    hyp_tok, ref_tok = ev.tokenize(list(preds.values()), list(refs.values()))
    gts = {k: r for k, r in zip(refs, ref_tok, strict=True)}
    res = {k: [h] for k, h in zip(preds, hyp_tok, strict=True)}
    assert res["b"] == ["two planes are parked"]
    assert gts["b"][0] == "two white planes -lrb- parked -rrb- at the airport"
    m = got["metrics"]
    assert [m[f"BLEU-{k}"] for k in range(1, 5)] == pytest.approx(
        Bleu(4).compute_score(gts, res, verbose=0)[0], abs=1e-9
    )
    assert m["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert m["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
    assert got["details"]["per_sample"]["ids"] == ["a", "b", "c"]
    assert got["counts"] == {"samples": 3, "references": 8}
    json.dumps(got)


def test_lists_and_dicts_give_the_same_scores():
    refs = [["a small lake near trees"], ["two roads and a bridge", "a bridge over a river"]]
    preds = ["a lake near trees", "a bridge over the river"]
    as_lists = CaptionEvaluator(FAST)(preds, refs)
    as_dicts = CaptionEvaluator(FAST)(dict(enumerate(preds)), dict(enumerate(refs)))
    assert as_lists["metrics"] == as_dicts["metrics"]
    pre = CaptionEvaluator(FAST, tokenizer="none")(preds, refs)
    assert pre["metrics"] == as_lists["metrics"]  # nothing to tokenise in these


def test_unavailable_metrics_are_none_with_a_reason(monkeypatch):
    import skylens.evaluate.caption_metrics as cm

    monkeypatch.setattr(cm.shutil, "which", lambda name: None)  # no java on PATH
    res = CaptionEvaluator(("BLEU", "METEOR", "SPICE"))(["a road"], [["a road"]])
    assert res["metrics"]["METEOR"] is None and res["metrics"]["SPICE"] is None
    why = res["details"]["unavailable"]
    assert "Java" in why["METEOR"]
    assert "SPICE" in why["SPICE"]
    assert res["metrics"]["BLEU-1"] == pytest.approx(1.0)


def test_spice_reports_missing_corenlp():
    reason = spice_unavailable_reason()
    if reason == "":
        pytest.skip("SPICE's CoreNLP jars are installed here")
    assert "CoreNLP" in reason or "Java" in reason or "spice" in reason


@pytest.mark.parametrize(
    "preds, refs, match",
    [
        (["a"], [["a"], ["b"]], "1 predictions but 2"),
        ({"x": "a"}, {"y": ["a"]}, "ids differ"),
        (["a"], [[]], "one or more reference"),
        ([3], [["a"]], "must be a string"),
        ({"x": "a"}, [["a"]], "both as lists or both as dicts"),
        ([], [], "no captions"),
    ],
)
def test_bad_caption_inputs(preds, refs, match):
    with pytest.raises(InputError, match=match):
        CaptionEvaluator(FAST)(preds, refs)


def test_unknown_metric_name():
    with pytest.raises(InputError, match="unknown caption metric"):
        CaptionEvaluator(("BLEU", "WER"))


def test_change_captions_split_into_subsets():
    refs = [
        ["many new houses are built", "houses appear on the bare land"],
        ["a road is built across the field", "a new road appears"],
        ["there is no difference", "the two scenes seem identical"],
        ["nothing has changed", "no change has occurred"],
    ]
    preds = ["new houses are built", "a road appears", "there is no difference", "no change"]
    flags = [True, True, False, False]
    res = ChangeCaptionEvaluator(FAST)(preds, refs, flags)
    m = res["metrics"]
    assert res["counts"] == {"pairs": 4, "changed": 2, "unchanged": 2, "references": 8}
    alone = CaptionEvaluator(FAST)(preds[:2], refs[:2])["metrics"]
    assert m["change/CIDEr"] == pytest.approx(alone["CIDEr"])  # the subset is its own corpus
    assert m["change/BLEU-4"] == pytest.approx(alone["BLEU-4"])
    assert m["no_change/BLEU-1"] is not None and m["CIDEr"] is not None
    assert m["S*m"] is None and "METEOR" in res["details"]["unavailable"]["S*m"]
    inferred = ChangeCaptionEvaluator(FAST)(preds, refs)
    assert inferred["metrics"] == m and inferred["details"]["change_flags"].startswith("inferred")


def test_change_subset_without_pairs_is_none():
    res = ChangeCaptionEvaluator(FAST)(["a road"], [["a road is built"]], [True])
    assert res["metrics"]["no_change/CIDEr"] is None
    assert res["details"]["unavailable"]["no_change/CIDEr"] == "no pair in this subset"


def test_no_change_phrases():
    for s in ("there is no difference", "The two scenes seem identical .", "nothing has changed"):
        assert is_no_change_caption(s), s
    for s in ("a new road is built", "many houses replaced the trees"):
        assert not is_no_change_caption(s), s


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs a Java runtime")
def test_meteor_through_pycocoevalcap():
    if meteor_unavailable_reason():
        pytest.skip(meteor_unavailable_reason())
    from pycocoevalcap.meteor.meteor import Meteor

    gts, res = generated_pairs(12, seed=3)
    gts[12], res[12] = ["a green field beside the road"], ["a green field beside the road"]
    gts[13], res[13] = ["a green field beside the road"], ["two white cars"]
    got = CaptionEvaluator(("METEOR",), tokenizer="none", per_sample=True)(
        [res[k][0] for k in sorted(res)], [gts[k] for k in sorted(gts)]
    )
    m = Meteor()
    want, want_each = m.compute_score(gts, res)
    del m
    assert got["metrics"]["METEOR"] == pytest.approx(want, abs=1e-6)
    each = got["details"]["per_sample"]["METEOR"]
    assert each == pytest.approx(want_each, abs=1e-6)
    assert each[12] > 0.9 > 0.2 > each[13]  # identical vs unrelated sentence


@pytest.mark.java
@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
def test_ucm_captions_match_the_full_coco_pipeline(shared_data):
    """Raw UCM-Captions test sentences: our pipeline == pycocoevalcap's (Java tokenizer too)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    images = json.loads((shared_data / "ucm_captions" / "dataset.json").read_text())["images"]
    test = [im for im in images if im["split"] == "test"]
    preds = {im["imgid"]: im["sentences"][0]["raw"] for im in test}
    refs = {im["imgid"]: [s["raw"] for s in im["sentences"][1:]] for im in test}
    ours = CaptionEvaluator(FAST)(preds, refs)["metrics"]
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": c}] for k, c in preds.items()})
    bleu4, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [ours[f"BLEU-{k}"] for k in range(1, 5)] == pytest.approx(bleu4, abs=1e-9)
    assert ours["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-9)
    assert ours["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-9)
