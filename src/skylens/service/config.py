"""The service's settings as one dataclass, built once by the face that starts it.

``skylens serve`` (or a test, or ``bench/load.py``) fills a ``ServiceConfig`` and hands it to
``create_app``; nothing under ``service/`` reads the environment but ``ServiceConfig.resolved``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from skylens.errors import InputError

MIB = 2**20


@dataclass(frozen=True)
class ServiceConfig:
    """What ``create_app`` builds the service from.

    The defaults suit one user on a laptop; ``bench/load.py`` measured the batching ones.
    """

    # the chip index to search (`skylens index`); None serves classify/caption/ask/change/
    # localize only
    index: Path | None = None
    # model name; None: the one the index was built with, else "default". Loaded on first use.
    model: str | None = None
    # folders whose files requests may name by server-side `path`; none: paths are refused
    # (403), so a bare service never reads a file it was not sent
    roots: tuple[Path, ...] = ()
    # bearer token every /api route but /api/health needs; None: read SKYLENS_API_TOKEN; an
    # empty string: no token (the default for 127.0.0.1)
    token: str | None = None
    # largest image upload (bytes): 50 MiB holds a 4,000 x 4,000 x 3 uncompressed TIFF; the
    # whole request body is cut off a little above it while it streams in (413)
    max_upload_bytes: int = 50 * MIB
    # origins allowed cross-origin access; empty: CORS is off (the page is same-origin)
    cors_origins: tuple[str, ...] = ()
    # hold the index's vectors in memory up to this many MiB and answer unfiltered text
    # searches in exact batches from there (0: LanceDB only). 2 GiB ~ 460,000 768-d chips.
    memory_mb: float = 2048.0
    # how long a text query waits to share an encoder call (s): 5 ms costs a lone query little
    # and lets 50 concurrent clients share calls (bench/load.py)
    batch_wait_s: float = 0.005
    # most text queries in one encoder call / matrix product
    max_batch: int = 64
    # CPU threads per model call, set process-wide at start-up (`configure_threads`): 1 runs a
    # batch per core, best under load (bench/load.py: 8.76 -> 3.6 ms of CPU per search on 2
    # cores); more suits one user with large change/localize jobs. None: leave the process's
    # thread pools alone (tests, an embedding application)
    threads: int | None = None
    # text-search batches computed at once: one encodes while another multiplies; with
    # `threads` set, derived from it (a batch per free core)
    parallel_batches: int = 2
    # index searches (LanceDB, image search) at once; LanceDB parallelises each, so more than a
    # few only adds contention
    max_searches: int = 4
    # work bound of one localize/change request, checked from the header before any pixel is
    # decoded (413): the scene's pixels (400 Mpx = 20,000 x 20,000; a 30,000 x 30,000 PNG
    # would decode whole, 2.7 GB) ...
    max_scene_pixels: int = 400_000_000
    # ... and the windows embedded, one forward pass each (~3 ms of CPU): 65,536 is a 8,000 px
    # scene at the default tile 64, stride 32, about three minutes of one core
    max_windows: int = 65_536
    # load the model and the vectors at start-up and freeze the GC's view of them (`skylens
    # serve`); off (tests), they load on the first request
    warm_start: bool = False

    def resolved(self) -> ServiceConfig:
        """This config checked, with the token taken from ``SKYLENS_API_TOKEN`` when unset.

        Raises:
            InputError: a limit out of range.
        """
        token = self.token if self.token is not None else os.environ.get("SKYLENS_API_TOKEN")
        checks = {
            "max_upload_bytes": self.max_upload_bytes > 0,
            "memory_mb": self.memory_mb >= 0,
            "max_batch": self.max_batch >= 1,
            "parallel_batches": self.parallel_batches >= 1,
            "max_searches": self.max_searches >= 1,
            "batch_wait_s": self.batch_wait_s >= 0,
            "max_scene_pixels": self.max_scene_pixels > 0,
            "max_windows": self.max_windows >= 1,
            "threads": self.threads is None or self.threads >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)}" for n in bad)
            raise InputError(f"service settings out of range: {shown}")
        return replace(
            self,
            index=Path(self.index) if self.index is not None else None,
            roots=tuple(Path(r) for r in self.roots),
            cors_origins=tuple(self.cors_origins),
            token=token or None,
        )


def config_from_kwargs(index: Path | str | ServiceConfig | None, **kwargs) -> ServiceConfig:
    """A ``ServiceConfig`` from ``create_app``'s arguments: a config as is, else an index path
    plus keyword settings (``memory_mb=0``, ``roots=[...]``, ...)."""
    if isinstance(index, ServiceConfig):
        return replace(index, **kwargs) if kwargs else index
    unknown = set(kwargs) - set(ServiceConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown service settings: {', '.join(sorted(unknown))}")
    for name in ("roots", "cors_origins"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name] or ())
    return ServiceConfig(index=Path(index) if index is not None else None, **kwargs)


__all__ = ["ServiceConfig", "config_from_kwargs"]
