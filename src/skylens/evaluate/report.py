"""Evaluation reports: one JSON (the record) and one Markdown (to read) per run, and comparisons.

A report is ``{"schema": ..., "metadata": {...}, "result": <an evaluator's result dict>}``. The
metadata say what was measured with what: model name and weights digest, data set, split, sample
counts, date, the command that produced it, and the skylens version. The caller passes them; the
report never guesses a model or a data set.

:func:`compare_reports` lines several reports up metric by metric for ``skylens eval compare``;
its :class:`ReportComparison` renders as Markdown or as a ``rich`` table.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skylens.errors import InputError, NotFoundError
from skylens.evaluate.base import to_jsonable

SCHEMA = "skylens.eval-report/1"
_LOWER_IS_BETTER_SUFFIXES = ("medr", "meanr")


def write_report(
    result: Mapping[str, Any],
    path_json: str | Path,
    path_md: str | Path | None = None,
    *,
    model: str | None = None,
    weights_digest: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    samples: int | Mapping[str, int] | None = None,
    command: str | None = None,
    date: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write an evaluator's result as a JSON report (and a Markdown one when ``path_md`` is given).

    Args:
        result: what an evaluator returned (``task``, ``metrics``, ``counts``, ...).
        path_json: where the JSON goes (parent folders are created).
        path_md: where the Markdown goes, or None.
        model: model name as ``skylens.load`` takes it (``default``, ``openclip:...``).
        weights_digest: digest of the weights file(s) (e.g. sha256), so a number can be traced.
        dataset: data set name (``ucm_captions``); split: its split (``test``).
        samples: sample counts; defaults to ``result["counts"]``.
        command: the command line that produced the result.
        date: ISO-8601 time; defaults to now (UTC).
        extra: further metadata (hardware, seed, prompt templates, ...).

    Returns:
        The report dict that was written.
    """
    if not isinstance(result, Mapping) or "metrics" not in result:
        raise InputError("write_report needs an evaluator result (a dict with 'metrics')")
    metadata: dict[str, Any] = {
        "model": model,
        "weights_digest": weights_digest,
        "dataset": dataset,
        "split": split,
        "samples": samples if samples is not None else result.get("counts"),
        "date": date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "skylens_version": _skylens_version(),
    }
    metadata.update(dict(extra or {}))
    report = to_jsonable({"schema": SCHEMA, "metadata": metadata, "result": dict(result)})
    path_json = Path(path_json)
    path_json.parent.mkdir(parents=True, exist_ok=True)
    path_json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if path_md is not None:
        path_md = Path(path_md)
        path_md.parent.mkdir(parents=True, exist_ok=True)
        path_md.write_text(report_markdown(report), encoding="utf-8")
    return report


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a JSON report written by :func:`write_report` (checks its shape)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: report not found")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON report ({exc})") from exc
    if not isinstance(report, dict) or "result" not in report or "metrics" not in report["result"]:
        raise InputError(f"{path}: not a skylens evaluation report (no result.metrics)")
    return report


def report_markdown(report: Mapping[str, Any]) -> str:
    """A report as Markdown: metadata, metrics (primary first), and per-class/per-type tables."""
    meta, res = report.get("metadata", {}), report["result"]
    task = res.get("task", "evaluation")
    title = f"# {task} evaluation"
    if meta.get("model"):
        title += f": {meta['model']}"
    if meta.get("dataset"):
        title += f" on {meta['dataset']}" + (f" ({meta['split']})" if meta.get("split") else "")
    lines = [title, "", "| field | value |", "|---|---|"]
    for key in ("model", "weights_digest", "dataset", "split", "samples", "date", "command"):
        lines.append(f"| {key} | {_md_escape(_format_meta(meta.get(key)))} |")
    for key, value in meta.items():
        if key not in ("model", "weights_digest", "dataset", "split", "samples", "date", "command"):
            lines.append(f"| {key} | {_md_escape(_format_meta(value))} |")
    units = res.get("units", "")
    primary = res.get("primary_metric")
    unavailable = res.get("details", {}).get("unavailable", {}) or {}
    lines += ["", "## Metrics", ""]
    if units:
        lines += [f"Units: {units}.", ""]
    lines += ["| metric | value |", "|---|---|"]
    for name, value in _ordered_metrics(res):
        cell = _format_value(value, units)
        if value is None and name in unavailable:
            cell = f"n/a: {unavailable[name]}"
        label = f"**{name}** (primary)" if name == primary else name
        lines.append(f"| {_md_escape(label)} | {_md_escape(cell)} |")
    details = res.get("details", {})
    if details.get("per_class_accuracy"):
        support = details.get("support", {})
        lines += [
            "",
            "## Per-class accuracy",
            "",
            "| class | accuracy | samples |",
            "|---|---|---|",
        ]
        for name, acc in details["per_class_accuracy"].items():
            lines.append(
                f"| {_md_escape(name)} | {_format_value(acc, 'percent')} | {support.get(name, '')} |"
            )
        matrix, names = details.get("confusion_matrix"), details.get("class_names", [])
        if matrix and len(names) <= 50:
            lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
            lines.append("| | " + " | ".join(_md_escape(n) for n in names) + " |")
            lines.append("|---" * (len(names) + 1) + "|")
            for name, row in zip(names, matrix, strict=True):
                lines.append(f"| {_md_escape(name)} | " + " | ".join(str(v) for v in row) + " |")
    if details.get("per_type_counts"):
        lines += ["", "## Per question type", "", "| type | questions | correct |", "|---|---|---|"]
        for t, c in details["per_type_counts"].items():
            lines.append(f"| {_md_escape(t)} | {c['questions']} | {c['correct']} |")
    return "\n".join(lines) + "\n"


@dataclass
class ReportComparison:
    """Reports side by side: one row per metadata field and metric, one column per report.

    ``best[i]`` is the column index (1-based into ``columns``) of the best value in row i, or
    None when the row is not comparable (metadata, a single value, missing values).
    """

    columns: list[str]
    rows: list[list[str]]
    best: list[int | None] = field(default_factory=list)

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown table; the best value of each metric row in bold."""
        out = ["| " + " | ".join(_md_escape(c) for c in self.columns) + " |"]
        out.append("|---" * len(self.columns) + "|")
        for row, best in zip(self.rows, self.best, strict=True):
            cells = [f"**{c}**" if best is not None and j == best else c for j, c in enumerate(row)]
            out.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
        return "\n".join(out) + "\n"

    def to_rich(self, title: str | None = "skylens eval compare"):
        """A ``rich.table.Table`` (best values bold green) for ``Console().print``."""
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title)
        for j, col in enumerate(self.columns):  # labels may hold "[run]": escape, not markup
            table.add_column(escape(col), justify="left" if j == 0 else "right")
        for row, best in zip(self.rows, self.best, strict=True):
            table.add_row(
                *[
                    f"[bold green]{escape(c)}[/]" if best is not None and j == best else escape(c)
                    for j, c in enumerate(row)
                ]
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "best": self.best}


def compare_reports(
    paths: Sequence[str | Path], metrics: Sequence[str] | None = None
) -> ReportComparison:
    """Line up several JSON reports metric by metric (for ``skylens eval compare``).

    Args:
        paths: JSON reports written by :func:`write_report`.
        metrics: only these metric names (default: every metric in any report, in order of
            first appearance).

    Returns:
        A :class:`ReportComparison`; missing metrics show as ``-``, unavailable ones as ``n/a``.
    """
    if not paths:
        raise InputError("compare_reports needs at least one report")
    reports = [load_report(p) for p in paths]
    labels = _labels(reports, [Path(p) for p in paths])
    columns = ["", *labels]
    rows: list[list[str]] = []
    best: list[int | None] = []
    for key in ("task", "dataset", "split", "samples", "date"):
        values = [
            r["result"].get("task") if key == "task" else r.get("metadata", {}).get(key)
            for r in reports
        ]
        if any(v is not None for v in values):
            rows.append([key, *[_format_meta(v) for v in values]])
            best.append(None)
    names: list[str] = []
    for r in reports:
        for name, _ in _ordered_metrics(r["result"]):
            if name not in names:
                names.append(name)
    if metrics is not None:
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise InputError(f"no report has the metric(s) {unknown}; they have {names}")
        names = list(metrics)
    for name in names:
        values = [r["result"]["metrics"].get(name, _MISSING) for r in reports]
        cells = []
        for r, v in zip(reports, values, strict=True):
            if v is _MISSING:
                cells.append("-")
            elif v is None:
                cells.append("n/a")
            else:
                cells.append(_format_value(v, r["result"].get("units", "")))
        rows.append([name, *cells])
        best.append(_best_column(name, values, reports))
    return ReportComparison(columns, rows, best)


_MISSING = object()


def _best_column(name: str, values: list, reports: list) -> int | None:
    numeric = [(j, v) for j, v in enumerate(values) if isinstance(v, (int, float))]
    if len(numeric) < 2 or len({r["result"].get("task") for r in reports}) != 1:
        return None
    lower = name.endswith(_LOWER_IS_BETTER_SUFFIXES)  # ranks; every other metric: higher wins
    j, value = (min if lower else max)(numeric, key=lambda jv: jv[1])
    if sum(v == value for _, v in numeric) > 1:
        return None  # a shared best: nothing to single out
    return j + 1


def _labels(reports: list[dict], paths: list[Path]) -> list[str]:
    labels = []
    for r, p in zip(reports, paths, strict=True):
        meta = r.get("metadata", {})
        labels.append(meta.get("model") or p.stem)
    if len(set(labels)) < len(labels):  # same model twice: tell the runs apart
        labels = [f"{lab} [{p.stem}]" for lab, p in zip(labels, paths, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{p}]" for lab, p in zip(labels, paths, strict=True)]
    return labels


def _ordered_metrics(result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    items = list(result.get("metrics", {}).items())
    primary = result.get("primary_metric")
    return sorted(items, key=lambda kv: kv[0] != primary)


def _format_value(value: Any, units: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.2f}" if str(units).startswith("percent") else f"{value:.4f}"


def _format_meta(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _skylens_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("skylens")
    except Exception:
        return None
