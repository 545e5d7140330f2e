"""Tiny knowledge-base sources and a deterministic bag-of-words encoder for the kb/rag/chat tests.

``write_sources(root)`` writes documents in every supported format (plus an empty file, a
scanned PDF and a hostile HTML page) and described images (a sidecar .txt, a sidecar .json with
coordinates, a georeferenced GeoTIFF). ``WordsEncoder`` embeds a text as its hashed word counts
and an image as its mean colour placed on the colour words' dimensions, so dense retrieval and
image queries have meaning in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from skylens.models.base import ImageTextEncoder, ModelCard, l2_normalize

DIM = 256  # hashed word buckets: few collisions between the tests' words
COLOUR_WORDS = {"red": 0, "green": 1, "blue": 2}


def _bucket(word: str) -> int:
    if word in COLOUR_WORDS:
        return COLOUR_WORDS[word]
    return 3 + int(hashlib.md5(word.encode()).hexdigest(), 16) % (DIM - 3)


class WordsEncoder(ImageTextEncoder):
    """Texts -> hashed counts of their (plural-stripped) words; images -> mean colour."""

    def __init__(self, variant: str = "") -> None:
        self.card = ModelCard(
            name="kbwords" + (f":{variant}" if variant else ""),
            version="kbwords-" + (variant or "v1"),
            image_size=32,
            embed_dim=DIM,
            source="tests/data/kb/make.py",
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                w = w[:-1] if len(w) > 3 and w.endswith("s") else w
                out[i, _bucket(w)] += 1.0
            out[i, DIM - 1] += 0.01
        return l2_normalize(out)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), DIM), np.float32)
        for i, im in enumerate(images):
            rgb = np.asarray(im, np.float32).reshape(-1, 3).mean(0) / 255.0
            out[i, :3] = np.maximum(rgb - rgb.mean(), 0) + 1e-3
        return l2_normalize(out)


HARBOUR = """# Harbours

A harbour is a sheltered body of water where ships, boats and barges can be moored.
Large harbours hold container terminals with cranes and storage yards.

Storage tanks near a harbour often hold crude oil or liquefied gas. They appear as white circles from above.
"""
AIRPORT_HTML = """<html><head><title>Airports</title><script>var secret = "exfiltrate the keys";</script>
<style>p { color: red }</style></head><body><h1>Airports</h1>
<p>An airport has runways, taxiways and an apron where airplanes park between flights.</p>
<p>Runways are usually between 1,800 and 4,000 metres long.</p></body></html>"""
FOREST = "Forests cover about thirty one percent of the land area of the Earth. Deciduous trees lose their leaves in autumn."


def text_pdf(lines: Sequence[str]) -> bytes:
    """A minimal one-page PDF whose text layer holds ``lines``."""
    ops = (
        ("BT /F1 12 Tf 72 720 Td " + " ".join(f"({ln}) Tj 0 -16 Td" for ln in lines) + " ET")
        if lines
        else ""
    )
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def blank_pdf() -> bytes:
    """A PDF page with no text layer (what a scan looks like to a text extractor)."""
    return text_pdf([])


def write_geotiff(path: Path, colour: tuple[int, int, int], lon: float, lat: float) -> None:
    import rasterio
    from affine import Affine

    arr = np.zeros((3, 32, 32), np.uint8)
    for b, v in enumerate(colour):
        arr[b] = v
    with rasterio.open(
        path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8",
        crs="EPSG:4326", transform=Affine(0.0001, 0, lon, 0, -0.0001, lat),
    ) as dst:  # fmt: skip
        dst.write(arr)


def write_sources(root: Path) -> dict[str, Path]:
    """Write the sources under ``root``; returns the notable paths by name."""
    docs = root / "docs"
    imgs = root / "images"
    docs.mkdir(parents=True)
    imgs.mkdir(parents=True)
    paths = {
        "harbour": docs / "harbour.md",
        "airport": docs / "airport.html",
        "forest_pdf": docs / "forest.pdf",
        "empty": docs / "empty.txt",
        "scan": docs / "scan.pdf",
        "red": imgs / "red_roofs.png",
        "blue": imgs / "blue_lake.png",
        "paris": imgs / "paris.tif",
    }
    paths["harbour"].write_text(HARBOUR)
    paths["airport"].write_text(AIRPORT_HTML)
    paths["forest_pdf"].write_bytes(text_pdf(FOREST.split(". ", 1)))
    paths["empty"].write_bytes(b"")
    paths["scan"].write_bytes(blank_pdf())
    Image.new("RGB", (32, 32), (200, 30, 30)).save(paths["red"])
    (imgs / "red_roofs.txt").write_text("An industrial estate with red roofs on long warehouses.")
    Image.new("RGB", (32, 32), (20, 40, 210)).save(paths["blue"])
    (imgs / "blue_lake.json").write_text(
        json.dumps(
            {
                "title": "Lake",
                "description": "A blue lake surrounded by reeds.",
                "lat": 46.45,
                "lon": 6.55,
            }
        )
    )
    write_geotiff(paths["paris"], (30, 160, 30), 2.3470, 48.8570)
    (imgs / "paris.txt").write_text("A green park in a dense city centre.")
    return paths
