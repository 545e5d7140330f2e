"""The one batched chip-embedding path: a reader thread feeds full batches to the model.

``skylens index`` (ingest), ``skylens change`` and ``skylens localize`` all embed chips of large
rasters the same way (DESIGN.md, issue 5 "share the batched embedding path"):

* a *reader thread* runs the caller's chip source (windowed reads, rendering to RGB) and the
  model's preprocessing (``model.preprocess``: resize + normalise to an NCHW float32 array), so
  decoding overlaps inference;
* the *calling thread* stacks full batches and runs the model on them: ``model.encode_pixels``
  on the preprocessed batch when the model has both ``preprocess`` and ``encode_pixels`` (the
  default model does), else ``model.encode_images`` on the RGB chips;
* memory stays bounded by a small queue (``queue_batches`` batches), whatever the scene size.

The source is any iterable of ``(payload, rgb)`` pairs; the payload travels with its chip and
comes back beside its embedding, in source order. An exception in the source is re-raised in
the caller; a caller that stops early (or fails) stops the reader too, before the source's
rasters are closed. This is the clip-retrieval reader -> mapper pattern (STYLE.md #6) inside one
process.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skylens.models.base import ImageTextEncoder, l2_normalize

BATCH = 64  # chips per forward pass: the ONNX image tower's throughput plateaus here on 2 cores
QUEUE_BATCHES = 4  # prepared batches the reader may run ahead of the model
_POLL_S = 0.1  # how often a blocked reader checks whether the caller has gone


@dataclass
class EmbeddedBatch:
    """A batch of chips and their embeddings, in source order.

    Attributes:
        payloads: what the source yielded beside each chip.
        vectors: (n, embed_dim) float32 L2-normalised rows.
        images: the RGB uint8 chips (HxWx3) when ``keep_images=True``, else None.
    """

    payloads: list[Any]
    vectors: np.ndarray
    images: list[np.ndarray] | None = None


def uses_pixels(model: ImageTextEncoder) -> bool:
    """Whether ``model`` is fed preprocessed batches (``preprocess`` + ``encode_pixels``)."""
    return callable(getattr(model, "preprocess", None)) and callable(
        getattr(model, "encode_pixels", None)
    )


def embed_stream(
    model: ImageTextEncoder,
    source: Iterable[tuple[Any, np.ndarray]],
    *,
    batch_size: int = BATCH,
    keep_images: bool = False,
    queue_batches: int = QUEUE_BATCHES,
    thread_name: str = "skylens-chip-reader",
) -> Iterator[EmbeddedBatch]:
    """Embed a stream of RGB chips in full batches, reading and preprocessing on a thread.

    Args:
        model: the encoder.
        source: iterable of ``(payload, rgb)``; ``rgb`` is HxWx3 uint8. It is consumed on the
            reader thread, so it may do the windowed reads itself.
        batch_size: chips per forward pass (the last batch may be smaller).
        keep_images: also return the RGB chips of each batch (e.g. for a captioner).
        queue_batches: batches the reader may prepare ahead.
        thread_name: name of the reader thread (shows in tracebacks and profilers).

    Yields:
        ``EmbeddedBatch`` per batch, in source order.

    Raises:
        Whatever the source raises, re-raised in the calling thread.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive number of chips, got {batch_size!r}")
    batch_size = int(batch_size)
    prepare = model.preprocess if uses_pixels(model) else None
    q: queue.Queue = queue.Queue(maxsize=max(1, queue_batches) * batch_size)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for payload, rgb in source:
                pixels = prepare([rgb])[0] if prepare is not None else rgb
                if not put((payload, pixels, rgb if keep_images else None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            put(_Failure(exc))
        finally:
            put(done)

    thread = threading.Thread(target=produce, name=thread_name, daemon=True)
    thread.start()
    payloads: list[Any] = []
    pixels: list[np.ndarray] = []
    images: list[np.ndarray] = []

    def run() -> EmbeddedBatch:
        if prepare is not None:
            vectors = model.encode_pixels(np.stack(pixels))
        else:
            vectors = model.encode_images(pixels)
        out = EmbeddedBatch(
            list(payloads),
            l2_normalize(np.asarray(vectors, np.float32)),
            list(images) if keep_images else None,
        )
        payloads.clear()
        pixels.clear()
        images.clear()
        return out

    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, _Failure):
                raise item.exc
            payloads.append(item[0])
            pixels.append(item[1])
            if keep_images:
                images.append(item[2])
            if len(payloads) >= batch_size:
                yield run()
        if payloads:
            yield run()
    finally:
        stop.set()  # a caller that stopped early releases the reader
        thread.join()


def embed_images(
    model: ImageTextEncoder, images: Sequence[np.ndarray], *, batch_size: int = BATCH
) -> np.ndarray:
    """Embeddings of in-memory RGB uint8 chips through the same batched path -> (N, D) unit rows.

    Runs on the calling thread (the pixels are already read): ``preprocess`` + ``encode_pixels``
    when the model has them, else ``encode_images``, ``batch_size`` chips at a time.
    """
    out = []
    pixels_path = uses_pixels(model)
    for i in range(0, len(images), batch_size):
        part = images[i : i + batch_size]
        vectors = (
            model.encode_pixels(model.preprocess(part))
            if pixels_path
            else model.encode_images(part)
        )
        out.append(np.asarray(vectors, np.float32))
    if not out:
        return np.zeros((0, getattr(model, "embed_dim", 1)), np.float32)
    return l2_normalize(np.concatenate(out))


@dataclass
class _Failure:
    exc: BaseException
