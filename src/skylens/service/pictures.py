"""How task results leave the service: JSON without NaN, pictures as data URLs, temporary paths
replaced by upload names.

The change and localize tasks draw their maps as PIL images; the service hands the picture back
inside the JSON answer as a ``data:image/png;base64,...`` URL (``imagery.render.png_data_url``,
the one PNG encoder), so the web page shows it without a second request and nothing is left on
the server's disk. JSON has no NaN: every non-finite float leaves as ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from skylens.imagery.render import png_data_url

PICTURE_MAX_SIDE = 1024  # pixels: the longer side of a returned change map or heatmap


def finite(value: object) -> object:
    """``value`` with every NaN/inf float (in lists, tuples and dicts) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON response that writes NaN/inf as null instead of failing (strict JSON, RFC 8259)."""

    def render(self, content: object) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return json.dumps(
                finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")


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


def answer_json(result, fmt: str, names: Mapping[str, str], extra: Mapping | None = None) -> dict:
    """A change/localize result as the JSON answer: GeoJSON as is, JSON plus ``extra``, paths
    relabelled and NaN as null."""
    if fmt == "geojson":
        return finite(relabel(result.to_geojson(), names))
    return finite(relabel(result.to_dict(), names) | dict(extra or {}))


async def picture_url(draw: Callable[..., object]) -> str:
    """``draw(max_side=...)`` (a PIL image) as a PNG data URL, drawn off the event loop."""
    return await run_in_threadpool(lambda: png_data_url(draw(max_side=PICTURE_MAX_SIDE)))
