"""The evaluator contract every metric in :mod:`skylens.evaluate` follows.

An evaluator is a small object configured once (which metrics, which ``k``, which class names) and
called on a model's outputs. It knows its ``primary_metric`` (the one number a model comparison
or a hyper-parameter search should look at) and whether ``greater_is_better`` (the pattern of
sentence-transformers' ``SentenceEvaluator``). Calling it returns a plain, JSON-serialisable dict:

.. code-block:: python

    {
        "task": "retrieval",             # what was measured
        "primary_metric": "mR",
        "greater_is_better": True,
        "units": "percent",              # how to read the numbers in "metrics"
        "counts": {"images": 210, "texts": 1050},
        "metrics": {"i2t_R@1": 12.4, ..., "mR": 31.9},   # flat: name -> float, or None
        "details": {...},                # non-scalar extras: per-class tables, confusion matrix,
    }                                    # and "unavailable": {metric: reason} for None metrics

Reports (:mod:`skylens.evaluate.report`) and the CLI print ``metrics`` as a table and keep the
rest in JSON. A metric that could not be computed (METEOR without Java) is ``None`` with its
reason under ``details["unavailable"]``, never a zero.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np


class Evaluator(ABC):
    """Base class: subclasses set ``task``, ``primary_metric``, ``greater_is_better``, ``units``."""

    task: ClassVar[str] = ""
    primary_metric: str = ""
    greater_is_better: bool = True
    units: str = ""

    @abstractmethod
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Score model outputs; returns the result dict described in the module docstring."""

    def primary_score(self, result: Mapping[str, Any]) -> float | None:
        """The primary metric's value in a result this evaluator returned."""
        return result["metrics"].get(self.primary_metric)

    def _result(
        self,
        metrics: Mapping[str, float | None],
        counts: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return to_jsonable(
            {
                "task": self.task,
                "primary_metric": self.primary_metric,
                "greater_is_better": self.greater_is_better,
                "units": self.units,
                "counts": dict(counts),
                "metrics": dict(metrics),
                "details": dict(details or {}),
            }
        )


def to_jsonable(value: Any) -> Any:
    """Plain Python for ``json.dumps``: numpy scalars/arrays to floats/lists, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    return value
