"""Realistic vectors for the search-at-scale benchmark: real chip embeddings, then many more like them.

``embed_real`` embeds real remote-sensing chips (NWPU-RESISC45, UC Merced, EuroSAT subsets in
``../shared/data``) with the default model and caches them in ``bench/work/scale_search``.
``synthesise`` grows them to N rows that keep the structure of real embeddings (class clusters,
a low-dimensional spread, anisotropic noise) instead of i.i.d. Gaussians, which are nearly
orthogonal to each other and make every IVF cell equally likely:

* each row starts from a real embedding ``e_i`` and moves a random share ``lam ~ U(0, 0.35)``
  towards another real embedding ``e_j`` of the same nearest-centroid group (mixing within a
  scene type, as neighbouring tiles of one archive do);
* noise is added in the principal-component basis of the real embeddings, scaled per component
  by ``sigma`` times that component's standard deviation (noise follows the spread of the data,
  not the ambient 384 dimensions);
* rows are L2-normalised, as the index stores them.

Queries are real embeddings of *held-out* chips (never used to generate rows), perturbed the same
way, so a query is a new image of a kind the archive holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
CACHE = ROOT / "bench" / "work" / "scale_search"
FOLDERS = ("nwpu_resisc45_subset", "ucm_landuse/Images", "eurosat_rgb_subset")


def chip_files(limit: int | None = None) -> list[Path]:
    files: list[Path] = []
    for folder in FOLDERS:
        files += sorted(
            p for p in (DATA / folder).rglob("*") if p.suffix.lower() in {".jpg", ".tif", ".png"}
        )
    return files[:limit] if limit else files


def embed_real(limit: int | None = None) -> np.ndarray:
    """(n, D) unit embeddings of real chips with the default model (cached)."""
    out = CACHE / "real.npy"
    if out.exists():
        return np.load(out)
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image
    from tqdm import tqdm

    import skylens
    from skylens.index.embed import embed_stream

    model = skylens.load("default")
    files = chip_files(limit)

    def source():
        for f in files:
            with Image.open(f) as im:
                yield f, np.asarray(im.convert("RGB"))

    vecs = []
    with tqdm(total=len(files), desc="embed real chips", unit="chip") as bar:
        for batch in embed_stream(model, source()):
            vecs.append(batch.vectors)
            bar.update(len(batch.payloads))
    real = np.concatenate(vecs).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(out, real)
    return real


def split_real(real: np.ndarray, held_out: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(base, held-out) rows of the real embeddings, a seeded random split."""
    order = np.random.default_rng(seed).permutation(len(real))
    return real[order[held_out:]], real[order[:held_out]]


def _groups(base: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Nearest-centroid group of each base row (a few rounds of spherical k-means)."""
    cent = base[rng.choice(len(base), n_groups, replace=False)]
    for _ in range(8):
        g = np.argmax(base @ cent.T, axis=1)
        for c in range(n_groups):
            m = base[g == c]
            if len(m):
                v = m.mean(0)
                cent[c] = v / max(np.linalg.norm(v), 1e-12)
    return np.argmax(base @ cent.T, axis=1)


class Synthesiser:
    """Rows and queries with the structure of ``base`` (see the module docstring)."""

    def __init__(self, base: np.ndarray, *, sigma: float = 0.35, mix: float = 0.35, seed: int = 1):
        self.base = base.astype(np.float32)
        self.sigma, self.mix = sigma, mix
        rng = np.random.default_rng(seed)
        centred = self.base - self.base.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        self.basis = vt.astype(np.float32)  # (r, D) principal directions
        self.std = (s / np.sqrt(len(base))).astype(np.float32)  # per-direction spread
        self.group = _groups(self.base, 64, rng)
        self.by_group = np.argsort(self.group, kind="stable")  # base rows, grouped
        counts = np.bincount(self.group, minlength=64)
        self.group_start, self.group_count = np.cumsum(counts) - counts, counts

    def perturb(self, start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((len(start), len(self.std)), dtype=np.float32)
        x = start + (noise * (self.sigma * self.std)) @ self.basis
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def rows(self, n: int, seed: int, chunk: int = 100_000):
        """Yield (n_chunk, D) float32 unit rows, ``n`` in all, deterministic for ``seed``."""
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            i = rng.integers(0, len(self.base), m)
            g = self.group[i]  # a uniform random member of each row's group
            pick = (rng.random(m) * self.group_count[g]).astype(np.int64)
            j = self.by_group[self.group_start[g] + pick]
            lam = rng.uniform(0, self.mix, (m, 1)).astype(np.float32)
            yield self.perturb((1 - lam) * self.base[i] + lam * self.base[j], rng)

    def queries(self, held_out: np.ndarray, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        pick = held_out[rng.integers(0, len(held_out), n)]
        return self.perturb(pick, rng)
