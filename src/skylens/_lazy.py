"""Import optional dependencies on demand with an error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from skylens.errors import MissingDependencyError


def lazy_import(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` saying ``pip install skylens[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised via monkeypatch in tests
        raise MissingDependencyError(
            f"'{module}' is needed for this and is not installed: pip install 'skylens[{extra}]'"
        ) from exc
