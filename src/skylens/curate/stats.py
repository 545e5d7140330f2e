"""``stats``: what a curated dataset holds, as a dict (for the CLI and JSON) and an HTML page.

Counts by source, class, split and text kind; caption lengths in words; vocabulary size and most
frequent words; what every step removed and why (from the manifest); with ``html``, a
self-contained page with those tables and a thumbnail grid of a seeded sample of records.
"""

from __future__ import annotations

import base64
import html
import io
import os
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

from skylens.curate.images import record_pixels
from skylens.curate.store import open_dataset

CAPTION_KINDS = ("caption", "tag_caption")


def dataset_stats(dataset: str | os.PathLike[str], top: int = 20) -> dict:
    """Summary of a curated dataset (see the module docstring); plain JSON-able dict."""
    ds = open_dataset(dataset)
    cols = ["source", "label", "split", "texts", "conversations", "objects", "image_window"]
    by_source, by_label, by_split, by_kind = Counter(), Counter(), Counter(), Counter()
    lengths, words = [], Counter()
    n = with_conv = regions = n_objects = 0
    for rec in ds.records(columns=cols):
        n += 1
        by_source[rec["source"]] += 1
        by_split[rec["split"]] += 1
        if rec["label"]:
            by_label[rec["label"]] += 1
        with_conv += bool(rec["conversations"])
        regions += bool(rec["image_window"])
        n_objects += len(rec["objects"] or [])
        for t in rec["texts"] or []:
            by_kind[t["kind"]] += 1
            if t["kind"] in CAPTION_KINDS:
                toks = re.findall(r"[a-z]+", t["text"].lower())
                lengths.append(len(toks))
                words.update(toks)
    lens = np.array(lengths or [0])
    removed = Counter()
    for step in ds.manifest.get("steps", []):
        for reason, k in (step.get("removed") or {}).items():
            removed[f"{step['command']}: {reason}"] += k
    return {
        "dataset": str(ds.path),
        "name": ds.manifest.get("name"),
        "records": n,
        "region_records": regions,
        "objects": n_objects,
        "records_with_conversations": with_conv,
        "by_source": dict(by_source.most_common()),
        "by_split": dict(by_split.most_common()),
        "by_text_kind": dict(by_kind.most_common()),
        "classes": len(by_label),
        "by_class": dict(by_label.most_common()),
        "caption_words": {
            "count": len(lengths),
            "mean": round(float(lens.mean()), 2),
            "p50": float(np.percentile(lens, 50)),
            "p95": float(np.percentile(lens, 95)),
            "max": int(lens.max()),
        },
        "vocabulary": len(words),
        "top_words": dict(words.most_common(top)),
        "removed": dict(removed.most_common()),
        "steps": [s["command"] for s in ds.manifest.get("steps", [])],
    }


def _thumb(rec: dict, side: int = 96) -> str:
    from PIL import Image

    try:
        px = record_pixels(rec, max_side=side)
    except Exception:  # a thumbnail that fails shows as missing, the page still renders
        return ""
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def _table(title: str, data: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in data.items()
    )
    return f"<h2>{html.escape(title)}</h2><table>{rows}</table>"


def stats_html(
    dataset: str | os.PathLike[str],
    page: str | os.PathLike[str],
    thumbnails: int = 48,
    seed: int = 0,
) -> dict:
    """Write a self-contained HTML page of the stats and a thumbnail grid; return the stats."""
    info = dataset_stats(dataset)
    ds = open_dataset(dataset)
    recs = list(ds.records())
    sample = random.Random(seed).sample(recs, min(thumbnails, len(recs)))
    cells = []
    for rec in sample:
        cap = next(
            (t["text"] for t in rec["texts"] if t["kind"] in CAPTION_KINDS + ("class_prompt",)), ""
        )
        b64 = _thumb(rec)
        img = f'<img src="data:image/jpeg;base64,{b64}">' if b64 else "<div>(unreadable)</div>"
        cells.append(f"<figure>{img}<figcaption>{html.escape(cap)}</figcaption></figure>")
    summary = {
        k: info[k]
        for k in (
            "records",
            "region_records",
            "objects",
            "classes",
            "vocabulary",
            "records_with_conversations",
        )
    }
    tables = "".join(
        f"<div>{_table(title, data)}</div>"
        for title, data in (
            ("By source", info["by_source"]),
            ("By split", info["by_split"]),
            ("By text kind", info["by_text_kind"]),
            ("Caption length (words)", info["caption_words"]),
            ("Removed by the steps", info["removed"] or {"(nothing)": 0}),
            ("Top words", info["top_words"]),
            ("By class", info["by_class"]),
        )
    )
    body = (
        f"<h1>{html.escape(str(info['name']))}</h1><div class='row'><div>{_table('Summary', summary)}</div>"
        f"{tables}</div><h2>Sample</h2><div class='grid'>{''.join(cells)}</div>"
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td{border:1px solid #ccc;"
        "padding:2px 8px}.grid,.row{display:flex;flex-wrap:wrap;align-items:flex-start}.row>div{margin-right:2em}"
        "figure{width:110px;margin:4px;font-size:10px}"
    )
    Path(page).write_text(
        f"<!doctype html><meta charset='utf-8'><style>{style}</style>{body}", encoding="utf-8"
    )
    return info
