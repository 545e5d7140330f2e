"""Open any raster GDAL reads (JPEG, PNG, TIFF/GeoTIFF, JP2, WebP, BMP, GIF) without loading it.

``read_raster`` validates the file and returns a ``Raster``: metadata now, pixels on demand by
window (``Raster.read``), so a 20,000 x 20,000 scene costs what its chips cost. Every error is a
``skylens.errors`` type that names the file and says what to do; no raw GDAL/rasterio error leaks,
including truncation that only shows when pixels are decoded.

Georeferencing follows the GeoTIFF standard (OGC 19-008r4) as GDAL exposes it: an affine
pixel -> CRS transform (from the geotransform, or fitted to ground control points) and a CRS.
Ground sample distance is reported in metres whatever the CRS units.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import from_gcps
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from skylens.errors import BandError, ImageReadError, ImageTooLargeError, InputError

try:  # GDAL errors that rasterio has not wrapped (private module, stable since rasterio 1.0)
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - future rasterio
    CPLE_BaseError = RasterioError

DEFAULT_MAX_PIXELS = 40_000 * 40_000  # decompression-bomb guard; SKYLENS_MAX_PIXELS overrides
MAX_PIXELS_ENV = "SKYLENS_MAX_PIXELS"
STATS_SIDE = 1024  # pixels: side of the decimated view used for percentile stretch statistics
STATS_GRID = 8  # big scenes without overviews: STATS_GRID^2 windows, block-aligned where possible
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), metres per radian of arc

#: GDAL errors raised while decoding pixels.
GDAL_ERRORS = (RasterioError, CPLE_BaseError, OSError, ValueError, MemoryError)

#: Config for opening and reading. GDAL's whole-image PNG fast path zero-fills a truncated file
#: without an error (GDAL 3.10); the row-by-row path reports it. The PNG end-chunk check in
#: ``_open`` catches plain truncation up front as well.
_READ_CONFIG = {"GDAL_PNG_WHOLE_IMAGE_OPTIM": "NO"}

Window4 = tuple[int, int, int, int]


def max_pixels_limit(explicit: int | None = None) -> int:
    """The pixel-count limit: ``explicit`` if given, else ``$SKYLENS_MAX_PIXELS``, else the default.

    Raises:
        InputError: the environment variable is not a positive integer.
    """
    if explicit is not None:
        return int(explicit)
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", "").strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive integer; set it to a pixel count "
            f"such as {DEFAULT_MAX_PIXELS} or unset it"
        )
    return value


@dataclass
class Raster:
    """An open raster: metadata now, pixels on demand. A context manager; or call ``close()``.

    Attributes:
        path: the file.
        width: columns, in pixels.
        height: rows, in pixels.
        count: number of bands (a paletted image is exposed as its 3 or 4 colour bands).
        dtype: numpy dtype name of the pixels ('uint8', 'uint16', 'float32', ...).
        band_names: per band: the file's description, else its colour interpretation
            ('red', 'green', 'blue', 'alpha', 'gray'), else 'band1', 'band2', ...
        nodata: the nodata value of the bands (may be NaN), or None.
        transform: affine pixel (col, row) -> CRS (x, y) transform, or None when the raster is
            not georeferenced (plain JPEG/PNG).
        crs: the CRS as ``rasterio.crs.CRS.to_string()`` gives it (``EPSG:32618``; WKT when it
            has no EPSG code), or None.
        gsd: ground sample distance in metres (mean of the x and y pixel sizes on the ground at
            the scene centre), or None when not georeferenced.
        tags: the dataset's metadata tags (e.g. ``TIFFTAG_DATETIME``).
        driver: the GDAL driver that opened the file ('GTiff', 'JPEG', 'PNG', ...).
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    band_names: list[str]
    nodata: float | None
    transform: Affine | None
    crs: str | None
    gsd: float | None
    tags: dict = field(default_factory=dict)
    driver: str = ""
    _ds: object = field(default=None, repr=False, compare=False)
    _palette: np.ndarray | None = field(default=None, repr=False, compare=False)
    _closed: bool = field(default=False, repr=False, compare=False)
    _stats: dict = field(default_factory=dict, repr=False, compare=False)

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file handle; later reads raise ``ImageReadError``."""
        self._closed = True
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def __getstate__(self) -> dict:
        # Picklable for process pools / Ray: the handle is dropped and reopened on first use.
        state = dict(self.__dict__)
        state["_ds"] = None
        return state

    @property
    def dataset(self) -> rasterio.io.DatasetReader:
        """The underlying rasterio dataset (reopened after unpickling)."""
        if self._ds is None:
            if self._closed:
                raise ImageReadError(
                    self.path, "raster is closed", "open it again with read_raster"
                )
            self._ds = _open(Path(self.path))
        return self._ds

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """(minx, miny, maxx, maxy) of the whole raster in its CRS, or None if not georeferenced."""
        if self.transform is None:
            return None
        xs, ys = zip(
            *(self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)),
            strict=True,
        )
        return (min(xs), min(ys), max(xs), max(ys))

    # -- pixels -------------------------------------------------------------------------------

    def read(
        self,
        window: Window4 | None = None,
        bands: Sequence[int] | None = None,
        out_size: tuple[int, int] | None = None,
        *,
        resampling: str = "nearest",
    ) -> np.ndarray:
        """Pixels as an HxWxC array in the native dtype.

        Args:
            window: (col_off, row_off, width, height) in pixels, inside the raster; None reads
                the whole raster (mind the size: prefer windows or ``out_size``).
            bands: 1-based band indices (repeats allowed); None reads all bands.
            out_size: (height, width) in pixels to read the window decimated; GDAL uses the
                file's overviews when it has them.
            resampling: GDAL resampling for ``out_size`` reads ('nearest', 'average',
                'bilinear', ...); 'average' avoids aliasing in thumbnails.

        Raises:
            BandError: a band outside 1..count.
            InputError: a window outside the raster, or a bad ``out_size``.
            ImageReadError: the pixels cannot be decoded (truncated or corrupt file).
        """
        band_list = self._check_bands(bands)
        win = self._check_window(window)
        shape = _check_out_size(self.path, out_size)
        if self._palette is not None:
            index = self._read_gdal([1], win, shape, resampling="nearest")[0]
            return self._palette[index][..., [b - 1 for b in band_list]]
        arr = self._read_gdal(band_list, win, shape, resampling=resampling)
        return np.moveaxis(arr, 0, -1)

    def valid_mask(
        self, window: Window4 | None = None, out_size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """HxW bool: True where the pixel holds data.

        False where every band equals nodata (GDAL's per-dataset mask), any band is NaN, the
        alpha band (or palette alpha) is 0, or the file's internal mask says so.

        Args:
            window: (col_off, row_off, width, height) in pixels; None = whole raster.
            out_size: (height, width) for a decimated mask matching ``read(out_size=...)``.
        """
        win = self._check_window(window)
        shape = _check_out_size(self.path, out_size)
        try:
            with rasterio.Env(**_READ_CONFIG):
                mask = self.dataset.dataset_mask(window=win, out_shape=shape) > 0
        except GDAL_ERRORS as exc:
            raise _decode_error(self.path, exc) from None
        if self._palette is not None and self.count == 4:
            mask &= self.read(window, [4], out_size)[..., 0] > 0
        elif np.issubdtype(np.dtype(self.dtype), np.floating):
            mask &= np.isfinite(self.read(window, out_size=out_size)).all(-1)
        return mask

    def stretch_stats(
        self, bands: Sequence[int], lo_pct: float = 2.0, hi_pct: float = 98.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-band percentiles of the whole scene, ignoring nodata/NaN/masked pixels.

        Computed once per (bands, percentiles) and cached, so every chip of a scene is
        stretched alike. The sample is a decimated view of at most ~``STATS_SIDE`` pixels a
        side: a decimated read when the scene is small or has overviews, otherwise
        ``STATS_GRID``^2 block-aligned windows spread over the scene, so a 20,000 px scene
        without overviews decodes a few dozen blocks instead of all of them.

        Args:
            bands: 1-based band indices.
            lo_pct: lower percentile, 0..100.
            hi_pct: upper percentile, 0..100.

        Returns:
            (lo, hi): float64 arrays with one value per entry of ``bands``; (0, 1) for a band
            without valid pixels.
        """
        band_list = self._check_bands(bands)
        key = (tuple(band_list), float(lo_pct), float(hi_pct))
        if key not in self._stats:
            pixels = self._stats_sample(band_list)
            lo = np.zeros(len(band_list))
            hi = np.ones(len(band_list))
            if len(pixels):
                lo = np.percentile(pixels, lo_pct, axis=0)
                hi = np.percentile(pixels, hi_pct, axis=0)
            self._stats[key] = (lo, hi)
        lo, hi = self._stats[key]
        return lo.copy(), hi.copy()

    # -- internals ----------------------------------------------------------------------------

    def _read_gdal(
        self, bands: list[int], win: Window | None, shape: tuple[int, int] | None, resampling: str
    ) -> np.ndarray:
        try:
            method = Resampling[resampling]
        except KeyError:
            names = ", ".join(m.name for m in Resampling)
            raise InputError(f"unknown resampling '{resampling}'; use one of {names}") from None
        out_shape = (len(bands), *shape) if shape else None
        try:
            with rasterio.Env(**_READ_CONFIG):
                return self.dataset.read(bands, window=win, out_shape=out_shape, resampling=method)
        except GDAL_ERRORS as exc:
            raise _decode_error(self.path, exc) from None

    def _check_bands(self, bands: Sequence[int] | None) -> list[int]:
        if bands is None:
            return list(range(1, self.count + 1))
        band_list = [int(b) for b in bands]
        if not band_list:
            raise BandError(f"{self.path}: no bands asked for; give bands in 1..{self.count}")
        bad = [b for b in band_list if not 1 <= b <= self.count]
        if bad:
            raise BandError(
                f"{self.path}: band {bad[0]} is out of range; this raster has bands 1..{self.count}"
            )
        return band_list

    def _check_window(self, window: Window4 | None) -> Window | None:
        if window is None:
            return None
        try:
            col, row, w, h = (int(v) for v in window)
        except (TypeError, ValueError):
            raise InputError(
                f"{self.path}: window must be (col_off, row_off, width, height), got {window!r}"
            ) from None
        if w <= 0 or h <= 0 or col < 0 or row < 0 or col + w > self.width or row + h > self.height:
            raise InputError(
                f"{self.path}: window (col_off={col}, row_off={row}, width={w}, height={h}) "
                f"is not inside the raster ({self.width} x {self.height} pixels)"
            )
        return Window(col, row, w, h)

    def _stats_sample(self, bands: list[int]) -> np.ndarray:
        """Valid pixels (N x len(bands), float64) of a decimated view of the whole scene."""
        longest = max(self.width, self.height)
        has_overviews = self._palette is None and bool(self.dataset.overviews(1))
        if longest <= 2 * STATS_SIDE or has_overviews:
            scale = min(1.0, STATS_SIDE / longest)
            size = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
            windows: list[tuple[Window4 | None, tuple[int, int] | None]] = [(None, size)]
        else:
            side = STATS_SIDE // STATS_GRID
            block_h, block_w = self.dataset.block_shapes[0]
            rows = _grid_starts(self.height, side, block_h)
            cols = _grid_starts(self.width, side, block_w)
            windows = [((c, r, side, side), None) for r in rows for c in cols]
        parts = []
        for win, size in windows:
            arr = self.read(win, bands, size).astype(np.float64)
            valid = self.valid_mask(win, size) & np.isfinite(arr).all(-1)
            parts.append(arr[valid])
        return np.concatenate(parts) if parts else np.empty((0, len(bands)))


def _grid_starts(length: int, side: int, block: int) -> list[int]:
    """STATS_GRID window offsets spread over ``length``, snapped to block starts when possible."""
    starts = np.linspace(0, length - side, STATS_GRID).round().astype(int)
    if side <= block < length:
        starts = np.minimum((starts // block) * block, length - side)
    return sorted(set(int(s) for s in starts))


def _check_out_size(path: str, out_size: tuple[int, int] | None) -> tuple[int, int] | None:
    if out_size is None:
        return None
    try:
        h, w = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise InputError(f"{path}: out_size must be (height, width), got {out_size!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"{path}: out_size must be positive, got ({h}, {w})")
    return (h, w)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _decode_error(path: str, exc: BaseException) -> ImageReadError:
    detail = _first_line(exc)
    cause = exc.__cause__ or exc.__context__
    if "See previous exception" in detail and cause is not None:
        detail = _first_line(cause)
    return ImageReadError(
        path,
        f"pixels cannot be decoded ({detail})",
        "the file is truncated or corrupt; re-download or re-export it",
    )


def _band_names(ds: rasterio.io.DatasetReader) -> list[str]:
    try:
        interps = [ci.name for ci in ds.colorinterp]
    except ValueError:  # a colour interpretation newer than this rasterio knows
        interps = ["undefined"] * ds.count
    names = []
    for i in range(ds.count):
        desc = (ds.descriptions[i] or "").strip() if ds.descriptions else ""
        if desc:
            names.append(desc.lower() if desc.lower() in _COLOUR_WORDS else desc)
        elif interps[i] in _COLOUR_WORDS and (interps[i] != "gray" or ds.count == 1):
            names.append(interps[i])
        else:
            names.append(f"band{i + 1}")
    return names


_COLOUR_WORDS = {"red", "green", "blue", "alpha", "gray", "nir"}


def _gsd_metres(crs: rasterio.crs.CRS, transform: Affine, width: int, height: int) -> float:
    """Mean ground size of a pixel at the scene centre, in metres."""
    px_x = math.hypot(transform.a, transform.d)  # CRS units per pixel along a row
    px_y = math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        lat = (transform @ (width / 2, height / 2))[1]
        metres_per_degree = EARTH_RADIUS_M * math.pi / 180
        gx = px_x * metres_per_degree * max(math.cos(math.radians(lat)), 1e-6)
        gy = px_y * metres_per_degree
        return (gx + gy) / 2
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    gsd = (px_x + px_y) / 2 * factor
    if "+proj=merc" in (crs.to_proj4() or ""):
        # Mercator metres grow as 1/cos(lat): scale back to ground metres at the centre.
        x, y = transform @ (width / 2, height / 2)
        _, (lat,) = warp_transform(crs, "EPSG:4326", [x], [y])
        gsd *= math.cos(math.radians(lat))
    return gsd


def _png_is_truncated(p: Path) -> bool:
    """A PNG must end with its IEND chunk (PNG spec, ISO/IEC 15948 section 11.2.5)."""
    with open(p, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
        fh.seek(max(0, p.stat().st_size - 4096))
        return b"IEND" not in fh.read()


def _open_by_name(p: Path) -> rasterio.io.DatasetReader:
    """``rasterio.open(p)``; a name that is not UTF-8 (GDAL takes UTF-8 names) is opened
    through its file descriptor (``/dev/fd/N``), so its sidecar files are not looked for."""
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system allows that UTF-8 cannot carry
        fd = os.open(p, os.O_RDONLY)
        try:
            return rasterio.open(f"/dev/fd/{fd}")
        finally:
            os.close(fd)  # GDAL opened its own descriptor
    return rasterio.open(p)


def _open(p: Path) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings(), rasterio.Env(**_READ_CONFIG):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = _open_by_name(p)
    except GDAL_ERRORS as exc:
        if isinstance(exc, OSError) and not isinstance(exc, RasterioError):  # from os.open
            raise ImageReadError(p, f"cannot be read ({exc.strerror or exc})") from None
        msg = _first_line(exc)
        if "not recognized as" in msg or "not recognised" in msg:
            raise ImageReadError(
                p,
                "not a raster format skylens can read",
                "JPEG, PNG, TIFF/GeoTIFF, JP2, WebP, BMP, GIF and other GDAL formats work",
            ) from None
        raise ImageReadError(
            p, f"cannot be opened ({msg})", "the file may be truncated or corrupt"
        ) from None
    if ds.driver == "PNG" and _png_is_truncated(p):
        ds.close()
        raise ImageReadError(
            p, "PNG data is truncated (no end chunk)", "re-download or re-export the file"
        )
    return ds


def _georeferencing(ds: rasterio.io.DatasetReader) -> tuple[Affine | None, object | None]:
    """(transform, CRS) or (None, None) when the raster has no usable georeferencing."""
    if ds.crs is not None and not ds.transform.is_identity:
        return ds.transform, ds.crs
    gcps, gcp_crs = ds.gcps
    if gcps and gcp_crs is not None and len(gcps) >= 3:
        # Ground control points only (e.g. raw swaths): a least-squares affine fit.
        return from_gcps(gcps), gcp_crs
    return None, None


def read_raster(path: str | Path, *, max_pixels: int | None = None) -> Raster:
    """Open and validate a raster; no pixels are loaded.

    Args:
        path: the file (JPEG, PNG, TIFF/GeoTIFF, JP2, WebP, BMP, GIF, or another GDAL format).
        max_pixels: refuse rasters whose header claims more than this many pixels
            (width x height); default ``$SKYLENS_MAX_PIXELS`` or ``DEFAULT_MAX_PIXELS``.

    Returns:
        An open ``Raster``; close it (or use ``with``) when done.

    Raises:
        ImageReadError: missing file, a folder, a 0-byte file, an unsupported format or corrupt
            data; the message names the file.
        ImageTooLargeError: width x height above the limit; the message says how to raise it.
    """
    p = Path(path)
    try:
        if not p.exists():
            raise ImageReadError(p, "file not found")
        if p.is_dir():
            raise ImageReadError(p, "is a folder, not an image")
        if p.stat().st_size == 0:
            raise ImageReadError(p, "file is empty (0 bytes)")
    except OSError as exc:  # a name too long, no permission, a loop of links
        raise ImageReadError(p, f"cannot be read ({exc.strerror or exc})") from None
    limit = max_pixels_limit(max_pixels)
    ds = _open(p)
    try:
        width, height = ds.width, ds.height
        if width * height > limit:
            raise ImageTooLargeError(
                p,
                f"header claims {width} x {height} = {width * height:,} pixels, "
                f"above the limit of {limit:,}",
                f"if the file is trusted, raise the limit with {MAX_PIXELS_ENV}=N "
                "or read_raster(..., max_pixels=N)",
            )
        if width <= 0 or height <= 0 or ds.count <= 0:
            raise ImageReadError(p, f"has no pixels ({width} x {height}, {ds.count} bands)")
        transform, crs = _georeferencing(ds)
        palette = _palette_lut(ds)
        if palette is not None:
            count = palette.shape[1]
            band_names = ["red", "green", "blue", "alpha"][:count]
            dtype = "uint8"
        else:
            count, band_names, dtype = ds.count, _band_names(ds), ds.dtypes[0]
        return Raster(
            path=str(p),
            width=width,
            height=height,
            count=count,
            dtype=dtype,
            band_names=band_names,
            nodata=None if palette is not None else ds.nodata,
            transform=transform,
            crs=crs.to_string() if crs is not None else None,
            gsd=_gsd_metres(crs, transform, width, height) if transform is not None else None,
            tags=dict(ds.tags()),
            driver=ds.driver,
            _ds=ds,
            _palette=palette,
        )
    except BaseException:
        ds.close()
        raise


def _palette_lut(ds: rasterio.io.DatasetReader) -> np.ndarray | None:
    """256 x 3 (or x 4 with transparency) uint8 lookup table of a paletted 1-band raster."""
    if ds.count != 1 or ds.dtypes[0] != "uint8":
        return None
    try:
        if ds.colorinterp[0] != ColorInterp.palette:
            return None
        cmap = ds.colormap(1)
    except (ValueError, *GDAL_ERRORS):
        return None
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 3] = 255
    for i, rgba in cmap.items():
        if 0 <= i < 256:
            lut[i] = rgba[:4]
    return lut if (lut[:, 3] < 255).any() else lut[:, :3].copy()


def parse_bands(
    spec: str | Sequence[int | str] | None,
    count: int,
    path: str | Path = "<raster>",
    band_names: Sequence[str] | None = None,
) -> list[int]:
    """The three 1-based bands to render as R, G, B.

    Args:
        spec: ``"4,3,2"``, ``[4, 3, 2]``, a single band (rendered grey) or band names such as
            ``"nir,red,green"`` (matched against ``band_names``, case-insensitive). None or
            ``""``: the bands named red, green, blue when ``band_names`` has them, else
            [1, 2, 3] for 3+ bands, else [1, 1, 1].
        count: number of bands in the raster.
        path: the raster, named in errors.
        band_names: the raster's band names (``Raster.band_names``).

    Raises:
        BandError: malformed spec, not 1 or 3 bands, or a band outside 1..count; the message
            names the file and the valid range.
    """
    names = [n.lower() for n in band_names] if band_names else []
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if all(c in names for c in ("red", "green", "blue")):
            return [names.index(c) + 1 for c in ("red", "green", "blue")]
        return [1, 2, 3] if count >= 3 else [1, 1, 1]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    bands = []
    for item in items:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            bands.append(int(text))
        elif text.lower() in names:
            bands.append(names.index(text.lower()) + 1)
        else:
            known = f" or a band name ({', '.join(band_names)})" if band_names else ""
            raise BandError(
                f"{path}: band '{text}' in '{spec}' is not a band number in 1..{count}{known}; "
                "give bands like 4,3,2"
            )
    if len(bands) == 1:
        bands = bands * 3
    if len(bands) != 3:
        raise BandError(
            f"{path}: give 1 or 3 bands to render as RGB (like 4,3,2), got {len(bands)} ('{spec}')"
        )
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise BandError(f"{path}: band {bad[0]} is out of range; this raster has bands 1..{count}")
    return bands
