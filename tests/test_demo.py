"""The demo's captions-and-questions section, with a fake model that answers from pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from skylens.demo import QUESTIONS, describe, write_report
from skylens.models.answerer import Answer, question_kind
from skylens.models.base import Answerer, Captioner, ModelCard


class BrightnessModel(Captioner, Answerer):
    """Captions 'a bright scene' or 'a dark scene'; declines every question but the theme."""

    def __init__(self) -> None:
        self.card = ModelCard(name="bright", version="b1", image_size=32, embed_dim=1)

    def caption_images(self, images, *, beam=3, max_tokens=40):
        return ["a bright scene" if np.mean(im) > 127 else "a dark scene" for im in images]

    def answer(self, image, question):
        kind = question_kind(question)
        if kind == "scene":
            return Answer(question, kind, "bright" if np.mean(image) > 127 else "dark")
        return Answer(question, kind, "cannot answer with this model", False, reason="fake")


def test_describe_captions_and_answers_each_image(tmp_path):
    for name, value in (("a_dark.png", 20), ("b_light.png", 230)):
        Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(tmp_path / name)
    out = describe(BrightnessModel(), [tmp_path], log=lambda m: None)
    assert [d["caption"] for d in out] == ["a dark scene", "a bright scene"]
    assert [a["text"] for a in out[1]["answers"]][0] == "bright"
    assert len(out[0]["answers"]) == len(QUESTIONS)
    assert not out[0]["answers"][1]["supported"]
    page = write_report(tmp_path / "r.html", [], [], {"rows": 0, "model": "bright"}, out)
    html = page.read_text()
    assert "a bright scene" in html and "cannot answer with this model" in html


def test_describe_skips_a_model_without_captioner(tmp_path, fake_encoder):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    logs = []
    assert describe(fake_encoder, [tmp_path], log=logs.append) == []
    assert "no captioner" in logs[0]
