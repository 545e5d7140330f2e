"""The chat's experts: each calls one existing skylens task and reports what it found.

Every expert takes the session and the (referent-resolved) turn and returns a
:class:`ExpertReply`: the answer text, a confidence in [0, 1], the evidence it rests on, the
knowledge-base citations and any geometry as a GeoJSON FeatureCollection (EPSG:4326; pixel
boxes of an image without georeferencing go in the evidence, not in GeoJSON). Nothing here
reimplements a task: captioning is the model's captioner, scene classes ``tasks.classify``,
questions ``tasks.ask``, the index ``tasks.search``, localization ``tasks.localize``, change
``tasks.change`` and knowledge ``tasks.rag``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skylens.errors import CapabilityError, InputError
from skylens.models.answerer import DEFAULT_SCENES
from skylens.models.base import Captioner
from skylens.tasks.ask import ask_image
from skylens.tasks.classify import classify_arrays
from skylens.tasks.rag import CANNOT, answer_question

if TYPE_CHECKING:
    from skylens.tasks.chat.session import ChatSession

LOCALIZE_TILE = 64  # pixels: localize's window for a chat turn (smaller scenes use their side)
SEARCH_HITS = 5


@dataclass
class ExpertReply:
    answer: str
    confidence: float
    supported: bool = True
    evidence: dict = field(default_factory=dict)
    citations: list[dict] = field(default_factory=list)
    geometry: dict | None = None
    referent: str | None = None  # the object this turn was about, for later "they"/"there"


def cannot(why: str) -> ExpertReply:
    return ExpertReply(f"{CANNOT}: {why}", 0.0, supported=False)


def _need_image(session: ChatSession) -> ExpertReply | None:
    if not session.images:
        return cannot("there is no image in this conversation; give one (skylens chat IMAGE)")
    return None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def caption(session: ChatSession, turn: str) -> ExpertReply:
    if (missing := _need_image(session)) is not None:
        return missing
    if not isinstance(session.model, Captioner):
        return cannot(f"model '{session.model.name}' cannot describe images")
    text = session.model.caption_images([session.rgb(0)])[0]
    return ExpertReply(text[:1].upper() + text[1:].rstrip(". ") + ".", 0.6, evidence={"image": session.images[0], "captioner": session.model.name})  # fmt: skip


def scene(session: ChatSession, turn: str) -> ExpertReply:
    if (missing := _need_image(session)) is not None:
        return missing
    [(labels, scores)] = classify_arrays(
        session.model, [session.rgb(0)], list(DEFAULT_SCENES), top=3
    )
    others = ", ".join(f"{lab} {s:.0%}" for lab, s in zip(labels[1:], scores[1:], strict=True))
    return ExpertReply(
        f"It looks like {labels[0]} ({scores[0]:.0%}); next: {others}.",
        float(scores[0]),
        evidence={"labels": labels, "scores": scores, "vocabulary": "DEFAULT_SCENES (40 classes)"},
        referent=labels[0],
    )


def vqa(session: ChatSession, turn: str) -> ExpertReply:
    if (missing := _need_image(session)) is not None:
        return missing
    try:
        ans = ask_image(session.model, session.rgb(0), turn)
    except CapabilityError as exc:
        return cannot(str(exc))
    if not ans.supported:
        extra = ""
        if ans.kind == "count" and session.last_regions:
            extra = f" The last localize step marked {session.last_regions} candidate regions, which is not a count."
        return ExpertReply(
            f"{CANNOT}: {ans.reason}.{extra}", 0.0, supported=False, evidence=ans.to_dict()
        )
    conf = ans.confidence if ans.confidence is not None else 0.5
    if (
        ans.kind == "presence"
    ):  # a z-score against the threshold: squash to a probability-like value
        conf = (
            _sigmoid(2.0 * (ans.confidence - 1.0))
            if ans.text == "yes"
            else _sigmoid(2.0 * (1.0 - ans.confidence))
        )
    return ExpertReply(
        ans.text[:1].upper() + ans.text[1:] + ".",
        float(min(max(conf, 0.0), 1.0)),
        evidence=ans.to_dict(),
    )


def search(session: ChatSession, turn: str, phrase: str) -> ExpertReply:
    if session.index is None:
        return cannot("no image index is open in this conversation (skylens chat --index DIR)")
    from skylens.tasks.search import search_text

    result = search_text(session.index, phrase, model=session.model, k=SEARCH_HITS)
    if not result.hits:
        return ExpertReply(f"No image in the index matches '{phrase}'.", 0.0, referent=phrase)
    best = result.hits[0]
    names = "; ".join(f"{h.path} (score {h.score:.2f})" for h in result.hits)
    return ExpertReply(
        f"{len(result.hits)} best matches for '{phrase}': {names}.",
        float(min(max(best.score, 0.0), 1.0)),
        evidence={"hits": [h.to_dict() for h in result.hits]},
        geometry=result.to_geojson(),
        referent=phrase,
    )


def localize(session: ChatSession, turn: str, phrase: str) -> ExpertReply:
    if (missing := _need_image(session)) is not None:
        return missing
    from skylens.tasks.localize import localize as localize_task

    side = session.full_size(0)
    tile = min(LOCALIZE_TILE, side[0], side[1])
    res = localize_task(
        session.images[0], phrase, session.model, tile=tile, stride=max(1, tile // 2), top=3
    )
    session.last_regions = len(res.regions)
    if not res.regions:
        return cannot(f"no part of the image could be scored for '{phrase}'")
    best = res.regions[0]
    # best window's margin over the scene mean: +0.1 cosine is a clear peak (0.95 at most:
    # a similarity peak is evidence of where, not a detection)
    conf = float(min(max(0.5 + 4.5 * best.relative, 0.0), 0.95))
    where = ", ".join(
        f"pixels {r.window[:2]} ({r.window[2]}x{r.window[3]} px, score {r.score:.2f})"
        for r in res.regions
    )
    geo = res.to_geojson() if any(r.geometry for r in res.regions) else None
    evidence = res.to_dict(heatmap=False)
    evidence["boxes_px"] = [list(r.window) for r in res.regions]  # (col, row, width, height)
    return ExpertReply(
        f"The windows that best match '{phrase}': {where}. These are where it is most likely, not a detection.",
        conf,
        evidence=evidence,
        geometry=geo,
        referent=phrase,
    )


def change(session: ChatSession, turn: str) -> ExpertReply:
    if len(session.images) < 2:
        return cannot("comparing needs two images of one place (skylens chat BEFORE AFTER)")
    from skylens.tasks.change import ChangeSession

    if session.change_session is None:
        session.change_session = ChangeSession(
            session.images[0], session.images[1], session.model, llm=session.llm
        )
    cs = session.change_session
    ans = cs.ask(turn)
    if not ans.supported:
        return ExpertReply(ans.text, 0.0, supported=False, evidence=ans.to_dict())
    if ans.kind == "unsupported" or ans.answered_by != "evidence" or ans.kind == "open":
        conf = 0.5
    else:
        conf = 0.8
    return ExpertReply(
        ans.text
        if ans.kind != "changed" or not cs.result.caption
        else f"{ans.text} {cs.result.caption}",
        conf,
        evidence={
            "answer": ans.to_dict(),
            "caption": cs.result.caption,
            "threshold": cs.result.threshold,
        },
        geometry=cs.result.to_geojson(),
    )


def knowledge(session: ChatSession, turn: str, about_image: bool) -> ExpertReply:
    if session.kb is None:
        return cannot("no knowledge base is open in this conversation (skylens chat --kb DIR)")
    image = session.images[0] if about_image and session.images else None
    try:
        res = answer_question(session.kb, turn, image=image, llm=session.llm)
    except InputError as exc:
        return cannot(str(exc))
    return ExpertReply(
        res.answer,
        res.confidence if res.supported else 0.0,
        supported=res.supported,
        evidence={
            "mode": res.mode,
            "passages": [p.to_dict() for p in res.passages],
            "place": res.place,
            "warnings": res.warnings,
        },
        citations=res.citations,
    )
