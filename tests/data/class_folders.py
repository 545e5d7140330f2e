"""Shared writer for the tiny class-folder scene datasets (``tests/data/<name>/make.py``).

Each dataset's ``make.py`` names its folder layout (root folder, class folders, file names); this
writes seeded random 32x32 images into it, class by class, so every copy is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_class_folders(
    root: Path,
    class_root: str,
    classes: Sequence[str],
    file_name: Callable[[str, int], str],
    *,
    seed: int = 0,
    per_class: int = 5,
    side: int = 32,
) -> Path:
    """Write ``root/class_root/<class>/<file_name(class, i)>`` for each class; returns ``root``."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        for i in range(per_class):
            path = root / class_root / cls / file_name(cls, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return root
