"""Evaluation reports: JSON + Markdown with metadata, loading, and side-by-side comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skylens.errors import InputError, NotFoundError
from skylens.evaluate import (
    RetrievalEvaluator,
    ZeroShotEvaluator,
    compare_reports,
    load_report,
    to_jsonable,
    write_report,
)


def retrieval_result(noise: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(20, 8))
    txt = img.repeat(5, 0) + noise * rng.normal(size=(100, 8))
    return RetrievalEvaluator()(img, txt, np.arange(20).repeat(5))


def test_write_report_json_and_markdown(tmp_path):
    res = ZeroShotEvaluator(["beach", "forest"])(np.array([[1.0, 0.0], [0.2, 0.8]]), [0, 0])
    report = write_report(
        res,
        tmp_path / "out" / "report.json",
        tmp_path / "out" / "report.md",
        model="default",
        weights_digest="sha256:abc",
        dataset="ucm_landuse",
        split="test",
        command="skylens eval classify --dataset ucm_landuse",
        date="2026-01-02T03:04:05+00:00",
        extra={"templates": 3},
    )
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk == report
    meta = on_disk["metadata"]
    assert meta["model"] == "default" and meta["weights_digest"] == "sha256:abc"
    assert meta["samples"] == {"samples": 2, "classes": 2, "classes_present": 1}
    assert meta["date"] == "2026-01-02T03:04:05+00:00" and meta["templates"] == 3
    assert on_disk["result"]["metrics"]["top1"] == 50.0
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.startswith("# classification evaluation: default on ucm_landuse (test)")
    assert "| **top1** (primary) | 50.00 |" in md
    assert "| beach | 50.00 | 2 |" in md and "Confusion matrix" in md
    assert load_report(tmp_path / "out" / "report.json") == report


def test_report_defaults_date_and_marks_unavailable(tmp_path):
    res = {
        "task": "captioning",
        "primary_metric": "CIDEr",
        "units": "coco-caption scale",
        "counts": {"samples": 1},
        "metrics": {"CIDEr": np.float64(1.5), "METEOR": None, "SPICE": float("nan")},
        "details": {"unavailable": {"METEOR": "no Java runtime on PATH"}},
    }
    report = write_report(res, tmp_path / "r.json", tmp_path / "r.md")
    assert report["metadata"]["date"][:2] == "20"  # ISO date filled in
    assert report["result"]["metrics"]["SPICE"] is None  # NaN is not JSON
    md = (tmp_path / "r.md").read_text()
    assert "| METEOR | n/a: no Java runtime on PATH |" in md
    assert "| **CIDEr** (primary) | 1.5000 |" in md


def test_write_report_rejects_non_results(tmp_path):
    with pytest.raises(InputError, match="evaluator result"):
        write_report({"mR": 3}, tmp_path / "r.json")


def test_load_report_errors(tmp_path):
    with pytest.raises(NotFoundError):
        load_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="not a JSON report"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a skylens evaluation report"):
        load_report(tmp_path / "other.json")


def test_compare_reports_rows_and_best(tmp_path):
    a = write_report(retrieval_result(0.5), tmp_path / "a.json", model="default", dataset="ucm")
    b = write_report(
        retrieval_result(3.0), tmp_path / "b.json", model="openclip:RN50", dataset="ucm"
    )
    table = compare_reports([tmp_path / "a.json", tmp_path / "b.json"])
    assert table.columns == ["", "default", "openclip:RN50"]
    rows = {r[0]: r for r in table.rows}
    assert rows["task"][1:] == ["retrieval", "retrieval"]
    assert rows["mR"][1] == f"{a['result']['metrics']['mR']:.2f}"
    assert rows["mR"][2] == f"{b['result']['metrics']['mR']:.2f}"
    i_mr = [r[0] for r in table.rows].index("mR")
    assert table.best[i_mr] == 1  # less noise, better recall
    i_medr = [r[0] for r in table.rows].index("t2i_meanr")
    assert table.best[i_medr] == 1  # lower rank is better
    md = table.to_markdown()
    assert md.splitlines()[0] == "|  | default | openclip:RN50 |"
    assert f"**{rows['mR'][1]}**" in md
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(table.to_rich())
    assert "openclip:RN50" in console.export_text()
    only = compare_reports([tmp_path / "a.json", tmp_path / "b.json"], metrics=["mR"])
    assert [r[0] for r in only.rows][-1] == "mR" and "i2t_R@1" not in [r[0] for r in only.rows]


def test_compare_reports_same_model_and_missing_metrics(tmp_path):
    write_report(retrieval_result(1.0), tmp_path / "run1.json", model="default")
    zs = ZeroShotEvaluator(["a", "b"])(np.eye(2), [0, 1])
    write_report(zs, tmp_path / "run2.json", model="default")
    table = compare_reports([tmp_path / "run1.json", tmp_path / "run2.json"])
    assert table.columns[1:] == ["default [run1]", "default [run2]"]
    rows = {r[0]: r for r in table.rows}
    assert rows["mR"][2] == "-" and rows["top1"][1] == "-"
    assert all(b is None for b in table.best)  # different tasks: nothing to rank
    with pytest.raises(InputError, match="no report has"):
        compare_reports([tmp_path / "run1.json"], metrics=["BLEU-4"])


def test_to_jsonable():
    out = to_jsonable({"a": np.float32(1.5), "b": np.arange(3), "c": {np.int64(1): {2, 1}}})
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": {"1": [1, 2]}}
    assert to_jsonable(float("inf")) is None


def test_shared_best_is_not_marked(tmp_path):
    zs = ZeroShotEvaluator(["a", "b"])
    write_report(zs(np.eye(2), [0, 1]), tmp_path / "x.json", model="x")
    write_report(zs(np.eye(2), [0, 1]), tmp_path / "y.json", model="y")
    table = compare_reports([tmp_path / "x.json", tmp_path / "y.json"])
    assert all(b is None for b in table.best)
