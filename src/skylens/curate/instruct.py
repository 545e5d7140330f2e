"""``instruct``: instruction data (multi-turn conversations) from the annotations of each record.

RS-GPT4V (Xu et al., 2024) and SkyEyeGPT (Zhan et al., 2024) build instruction sets from
remote-sensing annotations: hierarchical descriptions that go from the scene to its objects,
their counts and where they are, and question-answer turns about presence, count and location.
Here every fact comes from the record itself (its label, objects, captions and QA texts with
their true answers), so nothing is invented:

* turn 1: "Describe this image briefly." -> a caption of the record;
* turn 2 (when there is more than a caption): "Describe the image in detail." -> the
  hierarchical description (kind ``instruction`` text as well);
* then up to ``max_qa`` QA turns from the record's ``qa`` texts.

With ``llm`` (any ``skylens.load`` name of a ``TextGenerator``: a GGUF or OpenAI-compatible
model), the detailed description is rephrased; the rephrase is kept only if every number and
every class/object word in it occurs in the source facts (:func:`faithful`), else the template
text stays. The manifest counts both outcomes.
"""

from __future__ import annotations

import functools
import os
import re

from skylens.curate import facts
from skylens.curate.pipeline import LOCAL, Runner, run_batches, step_info
from skylens.curate.records import Record, meta_of, text, texts_of
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.curate.vocabulary import CLASS_DESCRIPTIONS, OBJECT_NAMES, describe, object_words

REPHRASE_PROMPT = (
    "Rewrite this description of an aerial image as fluent English. Keep every fact, number and "
    "object name; add nothing that is not stated.\n\nDescription: {facts}\n\nRewritten:"
)
#: Words that name classes or objects: a rephrase may use them only if the facts do.
#: Compared by stem (trailing "s" dropped), so "airplanes" counts as "airplane".
_EXTRA_WORDS = ("car", "truck", "boat", "vehicle", "aircraft", "tree", "house", "road", "building",
                "tank", "crane", "pool", "court", "field", "bridge", "tower", "container")  # fmt: skip
_VOCAB = {w.rstrip("s") for name in (*CLASS_DESCRIPTIONS, *_EXTRA_WORDS, *(p for pair in OBJECT_NAMES.values() for p in pair))
          for w in name.split() if len(w) > 2}  # fmt: skip


def detailed_description(record: Record) -> str:
    """Scene -> objects -> counts -> where, from the record's label and objects only."""
    parts = []
    label = record.get("label")
    if label:
        parts.append(f"The image shows {describe(label)[0]} ({label}).")
    objects = record.get("objects") or []
    width, height = record.get("width") or 0, record.get("height") or 0
    if objects:
        c = facts.counts(objects)
        names = sorted(c, key=lambda n: (-c[n], n))
        parts.append(
            f"It contains {facts.list_phrase([facts.count_phrase(n, c[n]) for n in names])}."
        )
        if width and height:
            for n in names[:4]:
                cells = facts.where(objects, n, width, height)
                verb = "is" if c[n] == 1 else "are"
                parts.append(f"The {object_words(n, c[n])} {verb} {facts.location_phrase(cells)}.")
    tags = meta_of(record).get("tags") or []
    if tags and not parts:
        words = [t["phrase"] for t in tags[:5]]
        parts.append(f"OpenStreetMap maps {facts.list_phrase(words)} here.")
    return " ".join(parts)


def _numbers(s: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", s))


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z]+", s.lower()))


def faithful(rephrase: str, source: str) -> bool:
    """True when every number and every class/object word of ``rephrase`` occurs in ``source``."""
    if not rephrase.strip():
        return False
    if not _numbers(rephrase) <= _numbers(source):
        return False
    stems = {w.rstrip("s") for w in _words(source)}
    return all(w.rstrip("s") in stems for w in _words(rephrase) if w.rstrip("s") in _VOCAB)


def _rephrase(llm: str | None, description: str) -> tuple[str, str]:
    """(text, outcome): the LLM's rephrase if faithful, else the template text."""
    if not llm or not description:
        return description, "template"
    from skylens.models import load

    model = load(llm)
    reply = model.generate(
        [{"role": "user", "content": REPHRASE_PROMPT.format(facts=description)}], max_tokens=160
    )
    reply = " ".join(reply.split())
    return (
        (reply, "rephrased") if faithful(reply, description) else (description, "rephrase rejected")
    )


def instruct_batch(
    records: list[Record], max_qa: int = 6, llm: str | None = None
) -> tuple[list[Record], list[dict]]:
    """Batch function (see ``pipeline.BatchFn``): records -> records with ``conversations``."""
    out, removed = [], []
    for rec in records:
        captions = texts_of(rec, "caption") + texts_of(rec, "tag_caption")
        detail = detailed_description(rec)
        qa = [t for t in rec.get("texts") or [] if t["kind"] == "qa" and t.get("answer")]
        if not captions and not detail and not qa:
            removed.append({"id": rec["id"], "reason": "no facts to build instructions from"})
            continue
        turns = []
        if captions:
            turns += [{"role": "user", "content": "<image>\nDescribe this image briefly."},
                      {"role": "assistant", "content": captions[0]}]  # fmt: skip
        texts = list(rec.get("texts") or [])
        meta = meta_of(rec)
        if detail:
            said, outcome = _rephrase(llm, detail)
            turns += [{"role": "user", "content": "Describe the image in detail."},
                      {"role": "assistant", "content": said}]  # fmt: skip
            texts.append(text("instruction", said))
            meta["instruct"] = outcome
        for t in qa[:max_qa]:
            turns += [
                {"role": "user", "content": t["text"]},
                {"role": "assistant", "content": t["answer"]},
            ]
        if not captions:
            turns[0]["content"] = "<image>\n" + turns[0]["content"]
        out.append({**rec, "texts": texts, "conversations": turns, "meta": _dump(meta)})
    return out, removed


def _dump(meta: dict) -> str:
    import json

    return json.dumps(meta, sort_keys=True, ensure_ascii=False)


def instruct(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    max_qa: int = 6,
    llm: str | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Write a new dataset whose records carry instruction conversations.

    Args:
        dataset: curated dataset folder.
        out: new dataset folder.
        max_qa: QA turns per conversation, at most.
        llm: optional ``TextGenerator`` name that rephrases the detailed description.
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    src = open_dataset(dataset)
    fn = functools.partial(instruct_batch, max_qa=max_qa, llm=llm)
    step = step_info("instruct", dataset=dataset, max_qa=max_qa, llm=llm)
    with DatasetWriter(out, step=step, parent=src, overwrite=overwrite) as w:
        run_batches(src.batches(batch_size), fn, w, total=src.count, desc="instruct", runner=runner)
    ds = open_dataset(out)
    return ds
