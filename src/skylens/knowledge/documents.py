"""Read knowledge sources into plain text pages: Markdown, text, HTML, PDF, and described images.

A knowledge base (RS-RAG: Wen et al., "RS-RAG: Bridging Remote Sensing Imagery and Comprehensive
Knowledge with a Multi-Modal Dataset and Retrieval-Augmented Generation Model", 2025) holds
documents and images with their descriptions. This module only turns files into
:class:`SourcePage` (text with its source and page number) and :class:`DescribedImage` (an image,
its description and, when known, where on Earth it is); chunking and storage live beside it.

* ``.md``/``.markdown``/``.txt``/``.rst``: UTF-8 text (Markdown markup is kept: it reads fine).
* ``.html``/``.htm``: visible text only; ``<script>``, ``<style>`` and other non-content
  elements are dropped, so a hostile page cannot smuggle code into answers.
* ``.pdf``: the text layer of each page through ``pypdf``; a PDF without one (a scan) is
  refused with a hint to OCR it.
* an image with a sidecar ``NAME.txt`` (its description) or ``NAME.json`` (``description`` or
  ``caption``, optional ``title``, ``lat``/``lon``): a described image. Its location comes from
  the sidecar or, for a georeferenced raster, from the centre of its footprint.

Every error names the file (``InputError``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from skylens._lazy import lazy_import
from skylens.errors import InputError, SkylensError
from skylens.imagery import RASTER_SUFFIXES, read_raster, window_geometry

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
HTML_SUFFIXES = (".html", ".htm")
DOC_SUFFIXES = (*TEXT_SUFFIXES, *HTML_SUFFIXES, ".pdf")
MAX_DOC_BYTES = 50 * 1024 * 1024  # a single document larger than this is refused (50 MiB)
MIN_TEXT_CHARS = 20  # fewer visible characters than this: treated as empty


@dataclass
class SourcePage:
    """One page of a document's text (page 1 for formats without pages)."""

    source: str
    page: int
    text: str
    title: str = ""


@dataclass
class DescribedImage:
    """An image with its description and, when known, its location (degrees, EPSG:4326)."""

    source: str
    description: str
    title: str = ""
    lat: float | None = None
    lon: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Skipped:
    source: str
    reason: str


class _VisibleText(HTMLParser):
    """Collects the visible text of an HTML page; drops scripts, styles and other non-content."""

    HIDDEN = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        if tag == "title":
            self._in_title = True
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1
        if tag == "title":
            self._in_title = False
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            self.parts.append(data)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: not found or not a file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if size > MAX_DOC_BYTES:
        raise InputError(f"{path}: {size / 2**20:.0f} MiB; documents are limited to 50 MiB")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise InputError(
            f"{path}: binary content, not text (NUL bytes); is it really {path.suffix}?"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
        ) from None


def _normalise(text: str) -> str:
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def _require_text(path: Path, text: str, what: str = "no readable text") -> str:
    if len(text.strip()) < MIN_TEXT_CHARS:
        raise InputError(f"{path}: {what} (fewer than {MIN_TEXT_CHARS} characters)")
    return text


def read_text_file(path: Path) -> list[SourcePage]:
    text = _require_text(path, _normalise(_decode(path)))
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.strip()), "")
    return [SourcePage(str(path), 1, text, title[:200])]


def read_html_file(path: Path) -> list[SourcePage]:
    parser = _VisibleText()
    try:
        parser.feed(_decode(path))
        parser.close()
    except (AssertionError, ValueError) as exc:  # html.parser's malformed-markup errors
        raise InputError(f"{path}: unreadable HTML ({exc})") from None
    text = _require_text(path, _normalise("".join(parser.parts)), "no visible text")
    return [SourcePage(str(path), 1, text, " ".join(parser.title.split())[:200])]


def read_pdf_file(path: Path) -> list[SourcePage]:
    pypdf = lazy_import("pypdf", "kb")
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            raise InputError(f"{path}: encrypted PDF; decrypt it first")
        texts = [page.extract_text() or "" for page in reader.pages]
    except SkylensError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise InputError(f"{path}: unreadable PDF ({type(exc).__name__}: {exc})") from None
    pages = [
        SourcePage(str(path), i + 1, _normalise(t))
        for i, t in enumerate(texts)
        if len(t.strip()) >= MIN_TEXT_CHARS
    ]
    if not pages:
        raise InputError(
            f"{path}: the PDF has no text layer ({len(texts)} pages of images?); "
            "OCR it first (e.g. ocrmypdf) and add the result"
        )
    return pages


def read_document(path: str | Path) -> list[SourcePage]:
    """The text pages of one document; ``InputError`` naming it when it is empty or unreadable."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_text_file(path)
    if suffix in HTML_SUFFIXES:
        return read_html_file(path)
    if suffix == ".pdf":
        return read_pdf_file(path)
    raise InputError(
        f"{path}: unsupported document type '{suffix}' (known: {', '.join(DOC_SUFFIXES)})"
    )


def _sidecar(image: Path) -> Path | None:
    for suffix in (".json", ".txt"):
        candidate = image.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _raster_centre(path: Path) -> tuple[float, float] | None:
    """(lat, lon) of a georeferenced raster's footprint centre, else None."""
    try:
        with read_raster(path) as raster:
            _, footprint = window_geometry(raster, (0, 0, raster.width, raster.height))
    except SkylensError:
        return None
    if not footprint:
        return None
    ring = footprint["coordinates"][0][:-1]
    return (sum(p[1] for p in ring) / len(ring), sum(p[0] for p in ring) / len(ring))


def _coordinate(value, name: str, limit: float, path: Path) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: '{name}' must be a number of degrees, got {value!r}") from None
    if not -limit <= v <= limit:
        raise InputError(f"{path}: '{name}' = {v} is outside -{limit}..{limit} degrees")
    return v


def read_described_image(image: str | Path) -> DescribedImage:
    """An image and its sidecar description (``NAME.txt`` or ``NAME.json``)."""
    image = Path(image)
    _check_file(image)
    side = _sidecar(image)
    if side is None:
        raise InputError(f"{image}: no description: add {image.with_suffix('.txt').name} or .json")
    _check_file(side)
    lat = lon = None
    title = ""
    if side.suffix == ".json":
        try:
            meta = json.loads(_decode(side))
        except json.JSONDecodeError as exc:
            raise InputError(f"{side}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{side}: expected a JSON object with a 'description'")
        text = str(meta.get("description") or meta.get("caption") or "")
        title = str(meta.get("title") or "")
        if meta.get("lat") is not None and meta.get("lon") is not None:
            lat = _coordinate(meta["lat"], "lat", 90, side)
            lon = _coordinate(meta["lon"], "lon", 180, side)
    else:
        text = _decode(side)
    text = _require_text(side, _normalise(text), "empty description")
    if lat is None:
        centre = _raster_centre(image)
        if centre:
            lat, lon = centre
    return DescribedImage(str(image), text, title or image.stem, lat, lon)


def iter_sources(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Documents and images under ``paths`` (files as given; folders walked, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    if f.suffix.lower() in DOC_SUFFIXES + RASTER_SUFFIXES and not _is_sidecar(f):
                        yield f
        else:
            yield p


def _is_sidecar(path: Path) -> bool:
    """A .txt/.json next to an image of the same name describes that image."""
    if path.suffix.lower() not in (".txt", ".json"):
        return False
    return any(path.with_suffix(s).is_file() for s in RASTER_SUFFIXES)


def read_sources(
    paths: Sequence[str | Path],
) -> tuple[list[SourcePage], list[DescribedImage], list[Skipped]]:
    """Read every document and described image under ``paths``; bad ones are reported, not fatal.

    Raises:
        InputError: a path that does not exist.
    """
    pages: list[SourcePage] = []
    images: list[DescribedImage] = []
    skipped: list[Skipped] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    for f in iter_sources(paths):
        try:
            if f.suffix.lower() in RASTER_SUFFIXES:
                images.append(read_described_image(f))
            else:
                pages.extend(read_document(f))
        except SkylensError as exc:  # unreadable, or its reader is not installed: reported
            skipped.append(Skipped(str(f), str(exc)))
    return pages, images, skipped
