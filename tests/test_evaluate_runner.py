"""``skylens eval caption|vqa``: the runner with small fake captioning/answering models.

The fakes answer from the image's pixels (brightness), so the scores below depend on what the
runner feeds them: a runner that mixed up images, captions or questions would score differently.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from skylens.cli import app
from skylens.datasets import get_dataset
from skylens.errors import CapabilityError
from skylens.evaluate.runner import require, run, run_caption, run_vqa
from skylens.models.answerer import Answer, question_kind
from skylens.models.base import Answerer, Captioner, ModelCard, register_backend, unregister_backend

DATA = Path(__file__).parent / "data"


def _make(name: str, root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(f"runner_{name}", DATA / name / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(root)


class EchoCaptioner(Captioner):
    """Captions every image with a fixed sentence; counts the images it saw."""

    def __init__(self, sentence: str) -> None:
        self.card = ModelCard(name="echo", version="echo-1", image_size=32, embed_dim=1)
        self.sentence = sentence
        self.seen = 0

    def caption_images(self, images, *, beam=3, max_tokens=40):
        self.seen += len(images)
        for im in images:
            assert np.asarray(im).ndim == 3
        return [self.sentence for _ in images]


class YesAnswerer(Answerer):
    """Says "yes" to presence questions, declines every other kind."""

    def __init__(self) -> None:
        self.card = ModelCard(name="yes", version="yes-1", image_size=32, embed_dim=1)

    def answer(self, image, question):
        kind = question_kind(question)
        if kind == "presence":
            return Answer(question, kind, "yes")
        return Answer(question, kind, "cannot answer with this model", supported=False)


def test_caption_runner_scores_what_the_model_says(tmp_path):
    root = _make("ucm_captions", tmp_path / "ucm")
    ds = get_dataset("ucm_captions", root, split="test")
    # the tiny copy's references read "There is a <word> number <n> variant <k> ."
    ref = ds[0]["captions"][0]
    good = run_caption(EchoCaptioner(ref), ds, split="test")
    bad = run_caption(EchoCaptioner("zebra crossing in snow"), ds, split="test")
    assert good["meta"]["samples"]["images"] == len(ds) == 3
    assert good["metrics"]["BLEU-1"] > bad["metrics"]["BLEU-1"]
    assert bad["metrics"]["BLEU-4"] == pytest.approx(0.0, abs=1e-6)
    assert good["details"]["examples"][0]["prediction"] == ref
    assert good["details"]["captions_per_s"] > 0


def test_vqa_runner_counts_declined_as_wrong(tmp_path):
    root = _make("rsivqa", tmp_path / "rsivqa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = get_dataset("rsivqa", root, split="test")
    result = run_vqa(YesAnswerer(), ds, split="test")
    types = [s.get("question_type") for s in ds]
    answers = [s["answer"] for s in ds]
    presence = [a for a, t in zip(answers, types, strict=True) if t == "presence"]
    expected = 100.0 * sum(a == "yes" for a in presence) / len(ds)
    assert result["metrics"]["overall_accuracy"] == pytest.approx(expected)
    assert result["details"]["declined"] == sum(t != "presence" for t in types)
    assert result["meta"]["samples"]["questions"] == len(ds)


def test_capabilities_are_refused_before_work(fake_encoder):
    with pytest.raises(CapabilityError, match="no captioner"):
        require(fake_encoder, "caption")
    with pytest.raises(CapabilityError, match="cannot answer"):
        require(fake_encoder, "vqa")
    with pytest.raises(CapabilityError, match="not an image-text encoder"):
        run("retrieval", YesAnswerer(), dataset=[], split="test")


def test_eval_caption_cli_writes_report(tmp_path):
    root = _make("ucm_captions", tmp_path / "ucm")
    model = EchoCaptioner("There is a plane number 105 variant 0 .")
    register_backend("echo", "test captioner")(lambda rest: model)
    try:
        out = tmp_path / "r.json"
        res = CliRunner().invoke(
            app,
            ["eval", "caption", "--dataset", "ucm_captions", "--root", str(root), "--model", "echo", "--out", str(out)],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        report = json.loads(out.read_text())
        meta = report["metadata"]
        assert meta["model"] == "echo" and meta["split"] == "test"
        assert meta["samples"]["images"] == 3
        assert (
            report["result"]["metrics"]["CIDEr"] > 0
        )  # one of the three test images matches exactly
        assert out.with_suffix(".md").is_file()
    finally:
        unregister_backend("echo")
