"""Zero-shot VQA: scene and presence grounded in image-text similarity; the rest refused."""

import numpy as np
import pytest

import skylens
from skylens.errors import InputError
from skylens.tasks.ask import ZeroShotAnswerer, presence_object, question_kind


def _img(rgb):
    a = np.zeros((16, 16, 3), np.uint8)
    a[:] = rgb
    return a


RED, GREEN = _img((230, 10, 10)), _img((10, 230, 10))


@pytest.mark.parametrize(
    "q,kind",
    [
        ("What is the theme of this picture?", "scene"),
        ("Does this picture contain an airplane?", "presence"),
        ("Is there a river in this image?", "presence"),
        ("How many boats in the picture?", "count"),
        ("What is the location of the trees in this picture?", "location"),
        ("Why is the sky blue?", "other"),
    ],
)
def test_question_kinds(q, kind):
    assert question_kind(q) == kind


def test_presence_object():
    assert presence_object("Does this picture contain an airplane?") == "airplane"
    assert presence_object("Are there any storage tanks in the image?") == "storage tanks"


def test_scene_and_presence_answers():
    ans = ZeroShotAnswerer(
        skylens.load("fake"),
        scenes=["red", "green", "blue"],
        objects=["red", "green", "blue"],
        presence_threshold=0.5,
    )
    assert ans.answer(RED, "What is the theme of this picture?").text == "red"
    assert ans.answer(GREEN, "what is the theme of this picture?").text == "green"
    assert ans.answer(RED, "Does this picture contain red?").text == "yes"
    assert ans.answer(GREEN, "Does this picture contain red?").text == "no"


def test_unsupported_questions_say_so():
    ans = ZeroShotAnswerer(skylens.load("fake"))
    a = ans.answer(RED, "How many cars in the picture?")
    assert not a.supported and a.text == "cannot answer with this model" and "counting" in a.reason
    with pytest.raises(InputError, match="empty"):
        ans.answer(RED, "   ")
    with pytest.raises(InputError, match="nothing was truncated"):
        ans.answer(RED, "is there " + "x" * 600)


def test_fit_learns_vocabulary_and_per_object_thresholds():
    model = skylens.load("fake")
    ans = ZeroShotAnswerer(model)
    samples, emb = [], {}
    for i in range(40):
        rgb = RED if i % 2 else GREEN
        emb[f"img{i}"] = model.encode_images([rgb])[0]
        samples.append(
            {
                "image": f"img{i}",
                "question": "What is the theme of this picture?",
                "answer": "red" if i % 2 else "green",
            }
        )
        samples.append(
            {
                "image": f"img{i}",
                "question": "Does this picture contain red?",
                "answer": "yes" if i % 2 else "no",
            }
        )
    ans.fit(samples, emb)
    assert list(ans.scenes) == ["green", "red"]
    assert "red" in ans.object_thresholds
    assert ans.answer(RED, "Does this picture contain red?").text == "yes"
    assert ans.answer(GREEN, "Does this picture contain red?").text == "no"
