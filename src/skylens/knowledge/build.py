"""Build or extend a knowledge base from sources (``skylens kb build`` / ``kb add``).

Documents become overlapping chunks; a described image becomes one passage whose text is its
description (plus the place it shows, from the gazetteer, when it is georeferenced) and whose
``joint`` embedding is the image's own; the gazetteer adds countries and large cities.
Re-running with the same sources adds nothing (ids are content hashes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skylens.errors import InputError, SkylensError
from skylens.knowledge.chunking import MAX_WORDS, chunk_text
from skylens.knowledge.documents import DescribedImage, Skipped, read_sources
from skylens.knowledge.gazetteer import DEFAULT_MIN_POPULATION, nearest_place, place_passages
from skylens.knowledge.store import KnowledgeBase, PassageRecord
from skylens.models.base import ImageTextEncoder
from skylens.tasks.common import load_scene_rgb


@dataclass
class BuildReport:
    """What a build/add did: passages added, already present, and sources skipped (with why)."""

    kb: str
    added: int
    total: int
    documents: int
    images: int
    places: int
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["skipped"] = [s.__dict__ for s in self.skipped]
        return d


def image_record(item: DescribedImage, skipped: list[Skipped]) -> PassageRecord | None:
    """A described image as a passage (its place linked when the image is georeferenced)."""
    try:
        rgb = load_scene_rgb(item.source, max_side=512)
    except SkylensError as exc:
        skipped.append(Skipped(item.source, str(exc)))
        return None
    text, place = item.description, ""
    if item.lat is not None and item.lon is not None:
        try:
            p = nearest_place(item.lat, item.lon)
            place = p.label()
            text += f" Location: {item.lat:.4f}, {item.lon:.4f}, near {place} ({p.distance_km} km)."
        except SkylensError as exc:  # no gazetteer installed: the image is still useful
            skipped.append(Skipped(item.source, f"place not linked: {exc}"))
    digest = hashlib.sha1(f"{item.source}\x1f{text}".encode()).hexdigest()[:16]
    return PassageRecord(
        digest, "image", item.source, text, title=item.title, lat=item.lat, lon=item.lon,
        place=place, image_rgb=rgb,
    )  # fmt: skip


def collect_records(
    sources: Sequence[str | Path],
    *,
    gazetteer: bool,
    min_population: int,
    max_words: int,
) -> tuple[list[PassageRecord], list[Skipped], dict]:
    pages, images, skipped = read_sources(sources)
    records = [
        PassageRecord(c.id, "text", c.source, c.text, page=c.page, chunk=c.index, title=c.title)
        for p in pages
        for c in chunk_text(
            p.text, source=p.source, page=p.page, title=p.title, max_words=max_words
        )
    ]
    image_records = [r for r in (image_record(i, skipped) for i in images) if r is not None]
    places = place_passages(min_population) if gazetteer else []
    records += image_records
    records += [
        PassageRecord(
            hashlib.sha1(f"{p.source}\x1f{p.text}".encode()).hexdigest()[:16], "place",
            p.source, p.text, title=p.title, lat=p.lat, lon=p.lon, place=p.title,
        )
        for p in places
    ]  # fmt: skip
    counts = {
        "documents": len({p.source for p in pages}),
        "images": len(image_records),
        "places": len(places),
    }
    return records, skipped, counts


def build_kb(
    sources: Sequence[str | Path],
    kb_dir: str | Path,
    *,
    model: ImageTextEncoder | str = "default",
    gazetteer: bool = False,
    min_population: int = DEFAULT_MIN_POPULATION,
    max_words: int = MAX_WORDS,
    progress: Callable[[int], None] | None = None,
) -> BuildReport:
    """Create (or extend) the knowledge base in ``kb_dir`` from documents, images and places.

    Args:
        sources: files and folders (documents: .md .txt .rst .html .pdf; images with a sidecar
            .txt/.json description).
        kb_dir: the knowledge-base folder (created when missing).
        model: the embedding model (recorded; queries must use the same one).
        gazetteer: add GeoNames countries and cities of at least ``min_population`` people.
        max_words: words per chunk at most.
        progress: called with the number of passages embedded after each batch.

    Raises:
        InputError: no source yields any passage (each skipped source is named).
        IndexMismatchError: ``kb_dir`` holds a knowledge base built with another model.
    """
    if not sources and not gazetteer:
        raise InputError("nothing to add: name documents/folders, or add the gazetteer")
    records, skipped, counts = collect_records(
        sources, gazetteer=gazetteer, min_population=min_population, max_words=max_words
    )
    if not records:
        why = "; ".join(f"{s.reason}" for s in skipped[:5]) or "no documents or images found"
        raise InputError(f"no passages to add from {', '.join(map(str, sources))}: {why}")
    kb = KnowledgeBase.create(kb_dir, model)
    added = kb.add(records, progress=progress)
    return BuildReport(str(kb_dir), added, kb.count(), skipped=skipped, **counts)


def add_to_kb(
    sources: Sequence[str | Path],
    kb_dir: str | Path,
    **options,
) -> BuildReport:
    """Add sources to an existing knowledge base (``kb add``); see :func:`build_kb`."""
    KnowledgeBase.open(kb_dir, options.get("model"))  # refuses a missing KB or another model
    if options.get("model") is None:
        options.pop("model", None)
        options["model"] = KnowledgeBase.open(kb_dir).meta["model_name"]
    return build_kb(sources, kb_dir, **options)
