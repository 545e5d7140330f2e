"""Pictures and names in service answers: task PNGs as data URLs, temporary paths as upload names.

The change and localize tasks draw their maps with ``write_png(path)``; the service hands the
picture back inside the JSON answer as a ``data:image/png;base64,...`` URL, so the web page shows
it without a second request and nothing is left on the server's disk.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

PICTURE_MAX_SIDE = 1024  # pixels: the longer side of a returned change map or heatmap


def png_data_url(write_png: Callable[[Path], object]) -> str:
    """Run ``write_png(path)`` into a private temporary folder and return the PNG as a data URL."""
    with tempfile.TemporaryDirectory(prefix="skylens-picture-") as tmp:
        path = Path(tmp) / "picture.png"
        write_png(path)
        data = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def relabel(value: object, names: Mapping[str, str]) -> object:
    """``value`` (a str, or lists/dicts of them) with every temporary path replaced by its label.

    Answers about uploads name the upload ("upload 'before.tif'"), never the server's temp file.
    """
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [relabel(v, names) for v in value]
    if isinstance(value, dict):
        return {k: relabel(v, names) for k, v in value.items()}
    return value
