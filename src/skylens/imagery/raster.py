"""Open any raster GDAL reads (JPEG, PNG, TIFF, GeoTIFF, JP2...) without loading its pixels.

``read_raster`` validates the file and returns a ``Raster``: metadata now, pixels on demand by
window (``Raster.read``), so a 20,000 x 20,000 scene costs what a chip costs. Every error names the
file and says what to do (``skylens.errors``).
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from skylens.errors import BandError, ImageReadError, ImageTooLargeError

DEFAULT_MAX_PIXELS = 40_000 * 40_000  # decompression-bomb guard; SKYLENS_MAX_PIXELS overrides
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2", ".bmp", ".webp", ".gif")
STATS_SIDE = 1024  # side of the decimated read used for percentile stretch statistics


def max_pixels_limit(explicit: int | None = None) -> int:
    if explicit is not None:
        return explicit
    return int(os.environ.get("SKYLENS_MAX_PIXELS", DEFAULT_MAX_PIXELS))


@dataclass
class Raster:
    """An open raster. Use as a context manager, or call ``close()``.

    Attributes:
        path: the file.
        width, height: size in pixels; count: number of bands; dtype: numpy dtype name.
        band_names: per band, from the file's descriptions or colour interpretation.
        nodata: the nodata value, if any.
        transform: affine pixel -> CRS transform, or None when not georeferenced.
        crs: CRS as a string such as ``EPSG:32618`` (WKT when no EPSG code), or None.
        gsd: ground sample distance in metres (None without georeferencing).
        tags: the dataset's metadata tags (e.g. ``TIFFTAG_DATETIME``).
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    band_names: list[str]
    nodata: float | None
    transform: object | None
    crs: str | None
    gsd: float | None
    tags: dict = field(default_factory=dict)
    _ds: object = field(default=None, repr=False)
    _stats: dict = field(default_factory=dict, repr=False)

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    @property
    def dataset(self):
        if self._ds is None:
            raise ImageReadError(self.path, "raster is closed")
        return self._ds

    def read(
        self,
        window: tuple[int, int, int, int] | None = None,
        bands: Sequence[int] | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Pixels as HxWxC in the native dtype.

        Args:
            window: (col_off, row_off, width, height) in pixels; None = whole raster.
            bands: 1-based band indices; None = all.
            out_size: (height, width) to read decimated (overviews are used when present).
        """
        bands = list(bands) if bands else list(range(1, self.count + 1))
        win = Window(*window) if window else None
        shape = (len(bands), *out_size) if out_size else None
        try:
            arr = self.dataset.read(bands, window=win, out_shape=shape)
        except (RasterioIOError, rasterio.errors.RasterioError, ValueError) as exc:
            raise ImageReadError(
                self.path,
                f"pixels cannot be read ({_first_line(exc)})",
                "the file is truncated or corrupt",
            ) from None
        return np.moveaxis(arr, 0, -1)

    def valid_mask(
        self,
        window: tuple[int, int, int, int] | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """HxW bool: False where any band is nodata/NaN, alpha is 0 or the dataset mask says so."""
        win = Window(*window) if window else None
        try:
            mask = self.dataset.dataset_mask(window=win, out_shape=out_size) > 0
        except (RasterioIOError, rasterio.errors.RasterioError, ValueError) as exc:
            raise ImageReadError(self.path, f"mask cannot be read ({_first_line(exc)})") from None
        if np.issubdtype(np.dtype(self.dtype), np.floating):
            arr = self.read(window, out_size=out_size)
            mask &= ~np.isnan(arr).any(-1)
        return mask

    def stretch_stats(
        self, bands: Sequence[int], lo_pct: float = 2.0, hi_pct: float = 98.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-band percentiles of the whole raster from a decimated read, ignoring invalid pixels.

        Cached, so every chip of a scene gets the same stretch.
        """
        key = (tuple(bands), lo_pct, hi_pct)
        if key not in self._stats:
            scale = min(1.0, STATS_SIDE / max(self.width, self.height))
            size = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
            arr = self.read(bands=bands, out_size=size).astype(np.float64)
            valid = self.valid_mask(out_size=size)
            lo, hi = [], []
            for b in range(arr.shape[-1]):
                v = arr[..., b][valid]
                v = v[np.isfinite(v)]
                if v.size == 0:
                    lo.append(0.0)
                    hi.append(1.0)
                    continue
                lo.append(float(np.percentile(v, lo_pct)))
                hi.append(float(np.percentile(v, hi_pct)))
            self._stats[key] = (np.array(lo), np.array(hi))
        return self._stats[key]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _band_names(ds) -> list[str]:
    names = []
    for i in range(ds.count):
        desc = ds.descriptions[i] if ds.descriptions else None
        if desc:
            names.append(desc)
            continue
        ci = ds.colorinterp[i].name if ds.colorinterp else "undefined"
        names.append(ci if ci not in ("undefined", "gray") or ds.count == 1 else f"band{i + 1}")
    return names


def _gsd_metres(ds) -> float | None:
    if ds.crs is None or ds.transform is None or ds.transform.is_identity:
        return None
    res = (abs(ds.transform.a) + abs(ds.transform.e)) / 2
    if ds.crs.is_geographic:
        lat = ds.xy(ds.height / 2, ds.width / 2)[1]
        return res * 111_320.0 * max(math.cos(math.radians(lat)), 1e-6)
    factor = ds.crs.linear_units_factor[1] if ds.crs.linear_units_factor else 1.0
    return res * factor


def read_raster(path: str | Path, *, max_pixels: int | None = None) -> Raster:
    """Open and validate a raster; no pixels are loaded.

    Raises:
        ImageReadError: missing file, a folder, 0-byte file, unsupported or corrupt data.
        ImageTooLargeError: width x height above ``max_pixels`` (default 1.6 gigapixels).
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioIOError as exc:
        msg = _first_line(exc)
        if "not recognized as" in msg or "not recognised" in msg:
            raise ImageReadError(
                p,
                "not a raster format skylens can read",
                "JPEG, PNG, TIFF/GeoTIFF, JP2 and other GDAL formats work",
            ) from None
        raise ImageReadError(
            p, f"cannot be opened ({msg})", "the file may be truncated or corrupt"
        ) from None
    limit = max_pixels_limit(max_pixels)
    if ds.width * ds.height > limit:
        w, h = ds.width, ds.height
        ds.close()
        raise ImageTooLargeError(
            p,
            f"header claims {w} x {h} pixels, above the limit of {limit:,}",
            "raise it with SKYLENS_MAX_PIXELS or max_pixels= if the file is trusted",
        )
    georef = ds.crs is not None and not ds.transform.is_identity
    crs = None
    if ds.crs is not None:
        epsg = ds.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else ds.crs.to_wkt()
    return Raster(
        path=str(p),
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=ds.dtypes[0],
        band_names=_band_names(ds),
        nodata=ds.nodata,
        transform=ds.transform if georef else None,
        crs=crs if georef else None,
        gsd=_gsd_metres(ds) if georef else None,
        tags=dict(ds.tags()),
        _ds=ds,
    )


def parse_bands(
    spec: str | Sequence[int] | None,
    count: int,
    path: str | Path = "<raster>",
    band_names: Sequence[str] | None = None,
) -> list[int]:
    """Bands to render as RGB: ``"4,3,2"`` -> [4, 3, 2].

    The default follows the file's colour interpretation when it names red, green and blue (a
    BGR(A) GeoTIFF renders the right way round), else [1, 2, 3], or [1, 1, 1] for one band.

    Raises:
        BandError: malformed spec, not 1 or 3 bands, or an index outside 1..count.
    """
    if spec is None or spec == "":
        names = [n.lower() for n in band_names or []]
        if all(c in names for c in ("red", "green", "blue")):
            return [names.index(c) + 1 for c in ("red", "green", "blue")]
        return [1, 2, 3] if count >= 3 else [1, 1, 1]
    if isinstance(spec, str):
        try:
            bands = [int(b) for b in spec.replace(" ", "").split(",") if b]
        except ValueError:
            raise BandError(
                f"{path}: bands must be comma-separated integers like 4,3,2, got '{spec}'"
            ) from None
    else:
        bands = [int(b) for b in spec]
    if len(bands) == 1:
        bands = bands * 3
    if len(bands) != 3:
        raise BandError(f"{path}: give 1 or 3 bands to render as RGB, got {len(bands)} ({spec})")
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise BandError(f"{path}: band {bad[0]} is out of range; this raster has bands 1..{count}")
    return bands


def file_digest(path: str | Path) -> str:
    """Hex BLAKE2b-128 of the file's content, streamed in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror})") from None
    return h.hexdigest()


def iter_image_files(paths: Sequence[str | Path], *, recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into raster files (by extension), sorted, skipping hidden ones.

    A path given explicitly is yielded whatever its extension (so a bad file gets a clear error
    from ``read_raster``); a missing path raises ``ImageReadError``.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ImageReadError(p, "file or folder not found")
        if p.is_file():
            yield p
            continue
        pattern = "**/*" if recursive else "*"
        found = [
            f
            for f in p.glob(pattern)
            if f.is_file()
            and f.suffix.lower() in RASTER_SUFFIXES
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        ]
        yield from sorted(found)
