"""Search an index by text, by example image, or by vector (``skylens search``).

Text search embeds the words and ranks chips by cosine similarity; with ``match_captions`` it is
a hybrid search that also matches the words against the chips' stored captions (BM25 over
LanceDB's full-text index, fused with the vector ranking by reciprocal rank; see
``skylens.index.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from skylens.errors import InputError
from skylens.index.memory import MemoryVectors
from skylens.index.store import ChipIndex, SearchHit, hits_to_geojson
from skylens.models.base import ImageTextEncoder, load
from skylens.tasks.common import load_scene_rgb

MAX_QUERY_CHARS = 1000


@dataclass
class SearchResult:
    query: str
    model: str
    hits: list[SearchHit] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query": self.query, "model": self.model, "hits": [h.to_dict() for h in self.hits]}

    def to_geojson(self) -> dict:
        fc = hits_to_geojson(self.hits)
        fc["properties"] = {"query": self.query, "model": self.model}
        return fc


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``'W,S,E,N'`` in degrees (EPSG:4326) -> tuple; ``InputError`` on anything else."""
    if not text:
        return None
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"bbox must be W,S,E,N in degrees, got '{text[:200]}'") from None
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InputError(f"bbox '{text}' is outside lon -180..180 / lat -90..90 or has S > N")
    return (w, s, e, n)


def parse_time_range(
    after: str | None, before: str | None
) -> tuple[datetime | None, datetime | None] | None:
    """ISO 8601 ``after``/``before`` (either may be empty) -> time range, or None."""
    out = []
    for name, text in (("after", after), ("before", before)):
        if not text:
            out.append(None)
            continue
        try:
            out.append(datetime.fromisoformat(text))
        except ValueError:
            raise InputError(
                f"{name} must be an ISO date like 2016-04-01, got '{text[:100]}'"
            ) from None
    return (out[0], out[1]) if any(out) else None


def check_query_text(text: str | None) -> str:
    """The stripped query; ``InputError`` when empty or too long."""
    text = (text or "").strip()
    if not text:
        raise InputError(
            "empty search text: say what to look for, e.g. 'airplanes parked at an airport'"
        )
    if len(text) > MAX_QUERY_CHARS:
        raise InputError(f"search text is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    return text


def _encoder_for(index: ChipIndex, model: ImageTextEncoder | str | None) -> ImageTextEncoder:
    enc = (
        load(index.model_name)
        if model is None
        else (load(model) if isinstance(model, str) else model)
    )
    enc.require(ImageTextEncoder)
    return enc


def search_vector(
    index: ChipIndex,
    vector: np.ndarray,
    *,
    model_version: str,
    k: int = 10,
    bbox: tuple[float, float, float, float] | None = None,
    time_range: tuple[datetime | None, datetime | None] | None = None,
    source: str | None = None,
    text: str | None = None,
) -> list[SearchHit]:
    """Hits nearest to ``vector``; with ``text``, fused with caption matches (hybrid)."""
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    return index.search(
        vector,
        k=k,
        bbox=bbox,
        time_range=time_range,
        source=source,
        query_model_version=model_version,
        text=text,
    )


def search_vectors(
    index: ChipIndex,
    vectors: np.ndarray,
    *,
    model_version: str,
    k: int = 10,
    memory: MemoryVectors | None = None,
) -> list[list[SearchHit]]:
    """Hits nearest to each row of ``vectors`` (no filters); ``memory`` answers them in one batch.

    See ``ChipIndex.search_many``; the service's micro-batched text search runs through here.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    return index.search_many(vectors, k=k, query_model_version=model_version, memory=memory)


def search_text(
    index: ChipIndex,
    text: str,
    *,
    model: ImageTextEncoder | str | None = None,
    k: int = 10,
    bbox: tuple[float, float, float, float] | None = None,
    time_range: tuple[datetime | None, datetime | None] | None = None,
    source: str | None = None,
    match_captions: bool = False,
) -> SearchResult:
    """Chips that best match ``text``; the model defaults to the one the index was built with.

    Args:
        match_captions: also match ``text`` against stored captions (hybrid search; the index
            must hold captions, ``skylens index --caption``).
    """
    text = check_query_text(text)
    enc = _encoder_for(index, model)
    vec = enc.encode_texts([text])[0]
    hits = search_vector(
        index,
        vec,
        model_version=enc.version,
        k=k,
        bbox=bbox,
        time_range=time_range,
        source=source,
        text=text if match_captions else None,
    )
    return SearchResult(text, enc.name, hits)


def search_image(
    index: ChipIndex,
    image: str | Path | np.ndarray,
    *,
    model: ImageTextEncoder | str | None = None,
    k: int = 10,
    bands: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    time_range: tuple[datetime | None, datetime | None] | None = None,
    source: str | None = None,
) -> SearchResult:
    """Chips most similar to an example image (a file or an RGB uint8 array)."""
    enc = _encoder_for(index, model)
    if isinstance(image, np.ndarray):
        rgb, label = image, "<array>"
    else:
        label = str(image)
        rgb = load_scene_rgb(image, bands=bands)
    vec = enc.encode_images([rgb])[0]
    hits = search_vector(
        index, vec, model_version=enc.version, k=k, bbox=bbox, time_range=time_range, source=source
    )
    return SearchResult(f"image:{label}", enc.name, hits)
