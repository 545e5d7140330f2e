"""``dedupe``: drop exact and near-duplicate images, within a dataset and against evaluation sets.

Three tests, each cheap enough for millions of images and each catching what the one before
misses (the layering SemDeDup, Abbas et al. 2023, and the LAION/DataComp pipelines use):

1. **exact**: equal content digest (BLAKE2b of the file bytes).
2. **perceptual hash**: pHash (Zauner 2010; ``imagehash``: DCT of a 32 x 32 grey image, 64
   bits) within ``phash_distance`` bits (Hamming), confirmed by a correlation of at least
   ``MIN_CORRELATION`` between 32 x 32 grey thumbnails (on the real sets, 6 of 9 raw pHash
   matches were dark or uniform scenes whose hashes collide: an island at sea and an overpass):
   re-encoded, resized and (evaluation side, through 11 crop views) slightly cropped copies.
3. **embedding**: cosine similarity of the image embeddings of a model (default: skylens's
   ``default``) at least ``cosine``: slightly cropped or recoloured copies.

Within the dataset the first record (in dataset order) of a group is kept. With ``against``
(folders of evaluation images, or curated datasets whose records are the evaluation split),
every record that matches an evaluation image is dropped, so a benchmark image never enters
training. Each drop is logged in the new dataset's ``removed.jsonl`` with the test, the matched
id or file and the distance/similarity, and counted in the manifest.

The per-record part (:func:`features_batch`) is a pure batch function ``scale/`` can map; the
pairing is a chunked all-pairs pass (numpy popcount / matrix product), O(N x M / chunk) memory.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from skylens.curate.images import digest_of, record_pixels
from skylens.curate.pipeline import LOCAL, Runner, batched, map_ordered, progress_bar, step_info
from skylens.curate.records import Record
from skylens.curate.store import CuratedDataset, DatasetWriter, open_dataset
from skylens.errors import InputError, MissingDependencyError

METHODS = ("exact", "phash", "embedding")
#: ``embedding`` is opt-in: with the default model, re-encoded copies score a median cosine of
#: 0.96 while distinct UCM/NWPU images reach 0.99 (measured, see docs/readme/curate.md), so no
#: threshold separates them; a model trained for copy detection would.
DEFAULT_METHODS = ("exact", "phash")
HASH_SIDE = 64  # images are decoded with their longer side near 4 x this (pHash itself needs 32)
THUMB = 32  # side of the grey thumbnail that confirms a pHash match
MIN_CORRELATION = 0.9  # thumbnail correlation a pHash match needs to count as a copy
CROP_SCALES = (0.9, 0.8)  # evaluation views: measured on UCM, 10 % crops match within 8 bits
EMBED_BATCH = 64


def phash64(pixels: np.ndarray) -> int:
    """64-bit perceptual hash (pHash) of RGB pixels, as an unsigned integer."""
    try:
        import imagehash
    except ImportError:
        raise MissingDependencyError(
            "dedupe needs imagehash: pip install skylens[curate]"
        ) from None
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(pixels)).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def grey_thumb(pixels: np.ndarray) -> np.ndarray:
    """32 x 32 grey thumbnail, zero-mean and unit-norm (1,024 float32): a dot product of two is
    their Pearson correlation, which confirms a pHash match (copies >= 0.97 measured on UCM,
    distinct images whose hashes collide <= 0.72)."""
    from PIL import Image

    g = np.asarray(
        Image.fromarray(pixels).convert("L").resize((THUMB, THUMB), Image.BILINEAR), np.float32
    ).ravel()
    g -= g.mean()
    return g / max(float(np.linalg.norm(g)), 1e-6)


def crop_views(pixels: np.ndarray) -> list[np.ndarray]:
    """The image and its 90 % and 80 % crops (centre and four corners): 11 views.

    Evaluation images are hashed in every view, so a training copy cropped by up to ~10 % a
    side still lands within a few bits of one of them.
    """
    h, w = pixels.shape[:2]
    views = [pixels]
    for scale in CROP_SCALES:
        ch, cw = int(h * scale), int(w * scale)
        for y, x in (
            ((h - ch) // 2, (w - cw) // 2),
            (0, 0),
            (0, w - cw),
            (h - ch, 0),
            (h - ch, w - cw),
        ):
            views.append(pixels[y : y + ch, x : x + cw])
    return views


def features_batch(
    records: list[Record], model: str | None = None, crops: bool = False
) -> list[dict]:
    """Map part of dedupe: ``{"id", "digest", "phash", "embedding"}`` per record.

    ``phash`` is a list of 64-bit hashes: one, or one per :func:`crop_views` view with
    ``crops``; ``embedding`` is None without ``model``.
    """
    out = [
        {"id": r["id"], "digest": r.get("digest"), "phash": None, "embedding": None}
        for r in records
    ]
    pixels = [record_pixels(r, max_side=HASH_SIDE * 4) for r in records]
    for o, px in zip(out, pixels, strict=True):
        views = crop_views(px) if crops else [px]
        o["phash"] = [phash64(v) for v in views]
        o["thumb"] = np.stack([grey_thumb(v) for v in views])
    if model:
        from skylens.models import load

        enc = load(model)
        emb = np.asarray(enc.encode_images(pixels), dtype=np.float32)
        for o, e in zip(out, emb, strict=True):
            o["embedding"] = e
    return out


def folder_records(folder: Path) -> list[Record]:
    """Records (path + digest) for every image under an evaluation folder."""
    from skylens.imagery import iter_image_files

    files = list(iter_image_files([folder]))
    if not files:
        raise InputError(f"{folder}: no images found to deduplicate against")
    return [{"id": str(f), "image_path": str(f), "digest": digest_of(f)} for f in files]


def against_records(paths: Sequence[str | os.PathLike[str]]) -> list[Record]:
    """Evaluation images: curated datasets (all their records) or folders of images."""
    out: list[Record] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if (p / "manifest.json").is_file():
            for rec in open_dataset(p).records():
                rec["id"] = f"{p.name}:{rec['id']}"
                out.append(rec)
        elif p.is_dir() or p.is_file():
            out += (
                folder_records(p)
                if p.is_dir()
                else [{"id": str(p), "image_path": str(p), "digest": digest_of(p)}]
            )
        else:
            raise InputError(f"{p}: evaluation folder or dataset not found")
    return out


def _features(
    records: list[Record],
    model: str | None,
    desc: str,
    crops: bool = False,
    batch_size: int = EMBED_BATCH,
    runner: Runner = LOCAL,
) -> dict:
    feats = []
    fn = functools.partial(features_batch, model=model, crops=crops)
    with progress_bar(len(records), desc) as bar:
        for batch, got in map_ordered(batched(records, batch_size), fn, runner):
            feats += got
            bar.update(len(batch))
    emb = None
    if model and feats:
        emb = np.stack([f["embedding"] for f in feats]).astype(np.float32)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return {
        "ids": [f["id"] for f in feats],
        "digest": [f["digest"] for f in feats],
        "phash": np.array([f["phash"] for f in feats], dtype=np.uint64).reshape(len(feats), -1),
        "thumb": np.stack([f["thumb"] for f in feats])
        if feats
        else np.zeros((0, 1, THUMB * THUMB), np.float32),
        "embedding": emb,
    }


def near_pairs(
    a: dict,
    b: dict,
    *,
    phash_distance: int,
    cosine: float,
    methods: Sequence[str],
    same: bool,
    chunk: int = 1024,
) -> Iterable[tuple[int, int, str, float]]:
    """(i in a, j in b, method, distance-or-similarity) of every near pair; with ``same``
    (a is b) only i < j. The first method that matches a pair names it."""  # fmt: skip
    if "exact" in methods:
        where: dict[str, list[int]] = {}
        for j, d in enumerate(b["digest"]):
            where.setdefault(d, []).append(j)
        for i, d in enumerate(a["digest"]):
            for j in where.get(d, []):
                if not same or i < j:
                    yield i, j, "exact", 0.0
    n = len(a["ids"])
    for s in range(0, n, chunk):
        rows = slice(s, min(n, s + chunk))
        mask = np.zeros((rows.stop - s, len(b["ids"])), dtype=bool)
        if same:
            mask |= np.arange(len(b["ids"]))[None, :] <= np.arange(s, rows.stop)[:, None]
        if "phash" in methods:
            # a holds one hash a record; b one or several views: the closest view counts
            views = np.bitwise_count(a["phash"][rows, 0, None, None] ^ b["phash"][None, :, :])
            dist = views.min(2)
            hit = (dist <= phash_distance) & ~mask
            for i, j in zip(*np.nonzero(hit), strict=True):
                # confirm: the thumbnail of a close view must correlate (hash collisions of
                # dark or uniform scenes do not)
                close = views[i, j] <= phash_distance
                corr = float((b["thumb"][j][close] @ a["thumb"][s + i, 0]).max())
                if corr >= MIN_CORRELATION:
                    hit_ij = (s + int(i), int(j))
                    mask[i, j] = True
                    yield *hit_ij, "phash", float(dist[i, j])
        if "embedding" in methods and a["embedding"] is not None:
            sim = a["embedding"][rows] @ b["embedding"].T
            hit = (sim >= cosine) & ~mask
            for i, j in zip(*np.nonzero(hit), strict=True):
                yield s + int(i), int(j), "embedding", round(float(sim[i, j]), 4)


def duplicates(feats: dict, ref: dict | None, *, within: bool, **kw) -> dict[int, dict]:
    """Index of each record to drop -> ``{"reason", "match", "score"}``: matches with the
    evaluation features ``ref`` first, then (``within``) later members of near-duplicate pairs."""
    drop: dict[int, dict] = {}
    if ref is not None:
        for i, j, method, score in near_pairs(feats, ref, same=False, **kw):
            if i not in drop:
                drop[i] = {
                    "reason": f"{method} match with evaluation image",
                    "match": ref["ids"][j],
                    "score": score,
                }
    if within:
        pairs = sorted(near_pairs(feats, feats, same=True, **kw), key=lambda p: (p[1], p[0]))
        for i, j, method, score in pairs:
            if j not in drop and i not in drop:
                drop[j] = {
                    "reason": f"{method} duplicate within the dataset",
                    "match": feats["ids"][i],
                    "score": score,
                }
    return drop


def dedupe(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    against: Sequence[str | os.PathLike[str]] = (),
    methods: Sequence[str] = DEFAULT_METHODS,
    phash_distance: int = 8,
    cosine: float = 0.99,
    model: str = "default",
    within: bool = True,
    overwrite: bool = False,
    runner: Runner = LOCAL,
) -> CuratedDataset:
    """Write a new dataset without duplicates (see the module docstring).

    Args:
        dataset: curated dataset folder.
        out: new dataset folder.
        against: evaluation image folders or curated datasets; matching records are dropped.
        methods: subset of ``exact``, ``phash``, ``embedding``.
        phash_distance: largest Hamming distance (bits of 64) counted as a copy, before the
            thumbnail check (8: on UCM, re-encoded/resized copies are within 4 bits and 10 %
            crops within 8 of a view).
        cosine: smallest embedding cosine similarity (0..1) counted as a copy.
        model: the encoder for ``embedding`` (any ``skylens.load`` name).
        within: also drop duplicates inside the dataset (keeps the first).
        runner: where the batches are mapped (:class:`~skylens.curate.pipeline.Runner`:
            in process, or on Ray Data with ``Runner("ray")``; the output is the same).
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(
            f"--methods must be a subset of {', '.join(METHODS)}, got {', '.join(methods) or 'none'}"
        )
    if not 0 <= phash_distance <= 64 or not 0.0 < cosine <= 1.0:
        raise InputError("phash_distance must be 0..64 and cosine in (0, 1]")
    started = time.time()
    src = open_dataset(dataset)
    records = list(src.records())
    use_model = model if "embedding" in methods else None
    feats = _features(records, use_model, "dedupe: features", runner=runner)
    kw = dict(phash_distance=phash_distance, cosine=cosine, methods=methods)
    ref = (
        _features(
            against_records(against),
            use_model,
            "dedupe: evaluation features",
            crops=True,
            runner=runner,
        )
        if against
        else None
    )
    drop = duplicates(feats, ref, within=within, **kw)
    step = step_info("dedupe", dataset=dataset, against=list(against), methods=list(methods),
                     phash_distance=phash_distance, cosine=cosine, model=use_model)  # fmt: skip
    with DatasetWriter(out, step=step, parent=src, overwrite=overwrite, started=started) as w:
        w.write(r for k, r in enumerate(records) if k not in drop)
        for k in sorted(drop):
            note = drop[k]
            w.removed(records[k]["id"], note["reason"], match=note["match"], score=note["score"],
                      image=records[k].get("image_path"))  # fmt: skip
    return open_dataset(out)
