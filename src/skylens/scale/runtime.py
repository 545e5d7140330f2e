"""Starting and reaching Ray: a local Ray with N CPUs by default, a cluster when given its address.

Ray is an optional dependency (``pip install 'skylens[scale]'``); importing ``skylens.scale`` does
not import it. Locally, the workers get the driver's ``sys.path`` (so the modules a pipeline
pickles by reference, e.g. a test's model, import there too) and ``SKYLENS_THREADS`` so each
worker's model uses its share of the cores instead of all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from skylens.errors import SkylensError


class ScaleError(SkylensError):
    """Ray is missing, or a Ray job failed (the message names the stage and the cause)."""


def require_ray():
    """Import ray, or say which extra installs it."""
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the install
        raise ScaleError(
            "Ray is not installed: pip install 'skylens[scale]' (ray[data]) to run pipelines on Ray"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[object]:
    """Ray for the duration of a ``with`` block; yields the ``ray`` module.

    Args:
        address: a cluster's head (``ray://HOST:10001`` through Ray Client, or ``HOST:6379`` /
            ``"auto"`` from a node of the cluster); None starts a local Ray.
        num_cpus: CPUs of the local Ray (default: every core); ignored with ``address``.

    A Ray that this process already started (``ray.is_initialized()``) is used as it is and left
    running; one started here is shut down at the end.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    else:
        cpus = int(num_cpus or os.cpu_count() or 1)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        kwargs |= {
            "num_cpus": cpus,
            "include_dashboard": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
        }
    ray.init(**kwargs)
    try:
        _quiet_data()
        yield ray
    finally:
        ray.shutdown()


def _quiet_data() -> None:
    """No Ray Data progress bars or per-operator logs on the user's terminal (we draw one bar)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    with contextlib.suppress(AttributeError):
        ctx.enable_operator_progress_bars = False
