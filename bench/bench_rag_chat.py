"""Measure the knowledge base, RAG answers, the chat router and chat latency.

    PYTHONPATH=src python bench/bench_rag_chat.py [--llm gguf:smollm2] [--data ../shared/data]

* Knowledge base: ``bench/data/kb/*.md`` (dataset, object, sensor, method and place notes written
  for this benchmark, in our own words) plus the GeoNames gazetteer (countries and cities of at
  least 1,000,000 people), embedded with the default model.
* Questions: ``bench/data/kb_questions.jsonl``: answerable ones name the source that holds the
  answer and the words a correct answer must contain (``answer_all_of``: every group, any word
  of a group); unanswerable ones (``source: null``) are correct only when the answer abstains.
  Retrieval recall@5: the gold source among the 5 returned passages. Nothing was tuned on them.
* Router: ``bench/data/router_turns.jsonl`` (114 user turns labelled with their expert).
* Chat latency: a scripted conversation over a UC Merced image, a LEVIR-CD pair and the KB
  (needs ``--data``; skipped without it).

Results: ``bench/results/rag_chat.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHAT_SCRIPT = [
    "describe the image",
    "what kind of place is this?",
    "is there a ship?",
    "show me the boats",
    "how many are there?",
    "what do storage tanks hold?",
    "what is a harbour?",
    "what changed between the two images?",
]


def correct(answer, q: dict) -> bool:
    if q["answer_all_of"] is None:
        return not answer.supported
    text = answer.answer.lower()
    return answer.supported and all(
        any(w.lower() in text for w in group) for group in q["answer_all_of"]
    )


def gold_in(passages, source: str | None) -> bool:
    if source == "geonames":
        return any(p.source.startswith("geonames:") for p in passages)
    return any(Path(p.source).name == source for p in passages)


def eval_questions(kb, questions, llm=None) -> dict:
    from skylens.tasks.rag import answer_question

    rows, hits, right, times, llm_kept = [], 0, 0, [], 0
    answerable = [q for q in questions if q["source"]]
    for q in questions:
        t = time.perf_counter()
        ans = answer_question(kb, q["question"], llm=llm)
        times.append(time.perf_counter() - t)
        ok = correct(ans, q)
        right += ok
        if q["source"]:
            hits += gold_in(ans.passages[:5], q["source"])
        if llm is not None and ans.supported and not ans.warnings:
            llm_kept += 1
        rows.append({"question": q["question"], "answer": ans.answer, "supported": ans.supported,
                     "correct": ok, "citations": ans.citations, "warnings": ans.warnings})  # fmt: skip
    out = {
        "questions": len(questions),
        "answerable": len(answerable),
        "recall_at_5": round(hits / len(answerable), 4),
        "answer_accuracy": round(right / len(questions), 4),
        "answer_accuracy_answerable": round(
            sum(r["correct"] for r, q in zip(rows, questions, strict=True) if q["source"])
            / len(answerable),
            4,
        ),  # fmt: skip
        "abstain_accuracy_unanswerable": round(
            sum(r["correct"] for r, q in zip(rows, questions, strict=True) if not q["source"])
            / max(1, len(questions) - len(answerable)),
            4,
        ),  # fmt: skip
        "seconds_per_question_median": round(statistics.median(times), 3),
        "rows": rows,
    }
    if llm is not None:
        out["llm_phrasing_kept"] = llm_kept
    return out


def eval_router(embed) -> dict:
    from skylens.tasks.chat.router import Router

    turns = [
        json.loads(ln) for ln in (HERE / "data" / "router_turns.jsonl").read_text().splitlines()
    ]
    router = Router(embed)
    confusion: dict[str, Counter] = defaultdict(Counter)
    methods = Counter()
    wrong = []
    for t in turns:
        r = router.route(t["turn"], has_image=True, images=2)
        confusion[t["expert"]][r.expert] += 1
        methods[r.method] += 1
        if r.expert != t["expert"]:
            wrong.append(
                {"turn": t["turn"], "label": t["expert"], "routed": r.expert, "method": r.method}
            )
    right = sum(confusion[e][e] for e in confusion)
    return {
        "turns": len(turns),
        "accuracy": round(right / len(turns), 4),
        "per_expert": {e: round(c[e] / sum(c.values()), 4) for e, c in confusion.items()},
        "methods": dict(methods),
        "errors": wrong,
    }


def chat_latency(data: Path, kb, llm=None) -> dict:
    from skylens.tasks.chat import ChatSession

    harbor = data / "ucm_landuse" / "Images" / "harbor" / "harbor01.jpg"
    pair = sorted((data / "change_pairs" / "levir_cd" / "A").glob("*.png"))[0]
    per_expert: dict[str, list[float]] = defaultdict(list)
    transcript = []
    for images in ([harbor], [pair, pair.parent.parent / "B" / pair.name]):
        session = ChatSession(images, kb=kb, llm=llm)
        for turn in CHAT_SCRIPT:
            r = session.ask(turn)
            per_expert[r.expert].append(r.latency_ms)
            transcript.append({k: r.to_dict()[k] for k in ("turn", "text", "expert", "resolved", "answer", "confidence", "supported", "latency_ms")})  # fmt: skip
    all_ms = [v for vs in per_expert.values() for v in vs]
    return {
        "turns": len(all_ms),
        "median_ms": round(statistics.median(all_ms), 1),
        "max_ms": round(max(all_ms), 1),
        "median_ms_by_expert": {e: round(statistics.median(v), 1) for e, v in per_expert.items()},
        "transcript": transcript,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default=None, help="also answer with this language model")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SKYLENS_DATA", HERE.parent.parent / "shared" / "data")))  # fmt: skip
    ap.add_argument("--work", type=Path, default=HERE / "work" / "rag_chat")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "rag_chat.json")
    ap.add_argument("--reuse-kb", action="store_true", help="keep a KB built by an earlier run")
    ap.add_argument(
        "--skip", default="", help="comma-separated parts to skip: extractive,router,chat"
    )
    args = ap.parse_args()

    from skylens.knowledge.build import build_kb
    from skylens.knowledge.store import KnowledgeBase

    t = time.perf_counter()
    if not (args.reuse_kb and (args.work / "kb").is_dir()):
        shutil.rmtree(args.work, ignore_errors=True)
    report = build_kb([HERE / "data" / "kb"], args.work / "kb", gazetteer=True)
    build_s = time.perf_counter() - t
    kb = KnowledgeBase.open(args.work / "kb")
    questions = [
        json.loads(ln) for ln in (HERE / "data" / "kb_questions.jsonl").read_text().splitlines()
    ]
    skip = set(filter(None, args.skip.split(",")))
    # sections merge into the results file as each finishes, so runs can add parts separately
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["kb"] = {**kb.info(), "build_seconds": round(build_s, 1), "added": report.added}

    def save(name: str, value: dict, command: str) -> None:
        result[name] = {"command": command, "load_average": os.getloadavg(), **value}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        shown = {k: v for k, v in value.items() if k not in ("rows", "errors", "transcript")}
        print(name, json.dumps(shown, indent=1), flush=True)

    command = "PYTHONPATH=src python bench/bench_rag_chat.py"
    if "extractive" not in skip:
        save("extractive", eval_questions(kb, questions), command)
    if "router" not in skip:
        save("router", eval_router(kb.embedder.texts), command)
    if args.llm:
        from skylens.tasks.change import as_text_generator

        llm = as_text_generator(args.llm)
        value = {"name": args.llm, **eval_questions(kb, questions, llm=llm)}
        save("llm", value, f"{command} --llm '{args.llm}' --skip extractive,router,chat")
    if "chat" not in skip and (args.data / "ucm_landuse").is_dir():
        save("chat", chat_latency(args.data, kb), command)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
