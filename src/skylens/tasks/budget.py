"""Work bounds and cancellation for tasks that slide windows over a scene (localize, change).

A small file can hide a huge job: an 875 KB PNG decodes to 30,000 x 30,000 px, and with 16 px
windows every 8 px that is ~14 million forward passes. ``check_scan`` reads only the header and
refuses such a job (``WorkTooLargeError``, HTTP 413) before any pixel is decoded, naming the
pixels, the windows and the limits. ``cancellable`` wraps an encoder so that a job stops at its
next batch once an event is set (the client left, the server is shutting down).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from skylens.errors import InputError, SkylensError
from skylens.imagery import read_raster
from skylens.models.base import ImageTextEncoder


class WorkTooLargeError(InputError):
    """A request would read more pixels or embed more windows than the limits allow."""

    http_status = 413


class Cancelled(SkylensError):
    """The job was cancelled before it finished (its caller went away)."""

    http_status = 499


@dataclass(frozen=True)
class ScanLimits:
    """Largest scan one request may start.

    Attributes:
        max_pixels: pixels of the scene (width x height). 400 Mpx = 20,000 x 20,000, which
            windowed reads of a tiled GeoTIFF handle; a PNG that size decodes whole.
        max_windows: windows embedded (each one forward pass, ~3 ms of CPU here).
    """

    max_pixels: int = 400_000_000
    max_windows: int = 65_536


def _starts(length: int, size: int, stride: int) -> int:
    """How many offsets ``imagery.window_starts`` gives, without listing them."""
    if length <= size:
        return 1
    n = (length - size) // stride + 1
    return n + (1 if (n - 1) * stride + size < length else 0)


def count_windows(width: int, height: int, tile: int, stride: int) -> int:
    """Windows of ``tile`` px every ``stride`` px over a ``width`` x ``height`` scene."""
    return _starts(width, tile, stride) * _starts(height, tile, stride)


def check_scan(path: str | Path, tile: int, stride: int, limits: ScanLimits, name: str) -> int:
    """The number of windows a scan of ``path`` would embed; refused when over ``limits``.

    Only the header is read. ``name`` is how the error names the scene (an upload's name, not
    its temporary file).

    Raises:
        WorkTooLargeError: too many pixels or windows (the message gives both and the limits).
        InputError: tile or stride not positive.
    """
    if tile < 1 or stride < 1:
        raise InputError(f"tile and stride must be positive pixels, got {tile} and {stride}")
    with read_raster(path) as raster:
        width, height = raster.width, raster.height
    pixels = width * height
    windows = count_windows(width, height, tile, min(stride, tile))
    if pixels > limits.max_pixels or windows > limits.max_windows:
        raise WorkTooLargeError(
            f"{name}: {width} x {height} px ({pixels:,} px) in {windows:,} windows of {tile} px "
            f"every {stride} px is more work than one request may start (limits: "
            f"{limits.max_pixels:,} px, {limits.max_windows:,} windows); send a smaller scene "
            "or use a larger tile and stride"
        )
    return windows


class _CancellableEncoder(ImageTextEncoder):
    """An encoder that raises ``Cancelled`` at its next call once ``cancel`` is set."""

    def __init__(self, inner: ImageTextEncoder, cancel: threading.Event) -> None:
        self._inner = inner
        self._cancel = cancel
        self.card = inner.card

    def _check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self._inner.name}: job cancelled")

    def encode_images(self, images):
        self._check()
        return self._inner.encode_images(images)

    def encode_texts(self, texts):
        self._check()
        return self._inner.encode_texts(texts)

    def text_classifier(self, class_names, *args, **kwargs):
        self._check()
        return self._inner.text_classifier(class_names, *args, **kwargs)

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)  # AttributeError when the inner model lacks it
        if name in ("encode_pixels", "preprocess") and callable(value):

            def checked(*args, **kwargs):
                self._check()
                return value(*args, **kwargs)

            return checked
        return value


def cancellable(model: ImageTextEncoder, cancel: threading.Event | None) -> ImageTextEncoder:
    """``model`` wrapped so that every encoder call raises ``Cancelled`` once ``cancel`` is set
    (a sliding-window task then stops at its next batch); ``model`` itself when ``cancel`` is
    None."""
    if cancel is None:
        return model
    model.require(ImageTextEncoder)
    return _CancellableEncoder(model, cancel)
