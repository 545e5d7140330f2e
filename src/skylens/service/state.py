"""What the routes share: the open index, the model loaded once, and the micro-batched search.

Routes reach it through the ``get_state`` dependency (``skylens.service.dependencies``) and use
only its public methods; storage is reached through ``skylens.tasks`` (``open_index``,
``hold_vectors``, ``search_index``), never ``skylens.index``.
"""

from __future__ import annotations

import gc
import logging
import threading

from skylens.errors import InputError, NotFoundError
from skylens.models.base import Answerer, Captioner, ImageTextEncoder, Model, available, load
from skylens.service.batching import MicroBatcher
from skylens.service.config import MIB, ServiceConfig
from skylens.tasks.budget import ScanLimits
from skylens.tasks.search import (
    SearchFilters,
    SearchResult,
    describe_index,
    hold_vectors,
    open_index,
    reading,
    search_text_batch,
)

log = logging.getLogger("skylens.service")

NO_INDEX = "no index is loaded: start the service with `skylens serve --index DIR`"

SearchKey = tuple[str, int, SearchFilters]


class ServiceState:
    """The service's index, model and text-search batcher, built once from a ``ServiceConfig``.

    Raises:
        NotFoundError: ``config.index`` is not an index (or is damaged: the message says which
            file, never a LanceDB traceback).
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        # check=True: a damaged index stops the service at start-up with a clear error
        self.index = open_index(config.index, check=True) if config.index is not None else None
        self.model_name = config.model or (
            self.index.model_name if self.index is not None else "default"
        )
        # unfiltered text searches are scored in batches against the vectors held in memory
        self.memory = (
            hold_vectors(self.index, int(config.memory_mb * MIB))
            if self.index is not None
            else None
        )
        self.search_slots = threading.BoundedSemaphore(config.max_searches)
        self._model: Model | None = None
        self._lock = threading.Lock()
        self._stats: tuple[int, dict] | None = None  # (table version, stats)
        # several batches at once (at least two: one encodes its texts while another multiplies)
        self.searcher: MicroBatcher[SearchKey, list] = MicroBatcher(
            self._search_batch,
            max_wait_s=config.batch_wait_s,
            max_batch=config.max_batch,
            max_inflight=config.parallel_batches,
        )

    # -- the model ----------------------------------------------------------------------------
    def model(self) -> Model:
        """The service's model, loaded on first use (call from a worker thread)."""
        with self._lock:
            if self._model is None:
                self._model = load(self.model_name)
            return self._model

    def encoder(self) -> ImageTextEncoder:
        m = self.model()
        m.require(ImageTextEncoder)
        return m  # type: ignore[return-value]

    @property
    def scan_limits(self) -> ScanLimits:
        """The work bound of one change/localize request (``ServiceConfig``)."""
        return ScanLimits(self.config.max_scene_pixels, self.config.max_windows)

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def models_info(self) -> dict:
        """The service's model, what it can do once loaded, and the backends this install knows."""
        m = self._model
        kinds = (ImageTextEncoder, Captioner, Answerer)
        return {
            "model": self.model_name,
            "loaded": m is not None,
            "capabilities": [k.__name__ for k in kinds if isinstance(m, k)] if m else None,
            "index_model": self.index.model_name if self.index is not None else None,
            "backends": [
                {"scheme": b.scheme, "example": b.example, "description": b.description}
                for b in available()
            ],
        }

    # -- search -------------------------------------------------------------------------------
    def require_index(self):
        if self.index is None:
            raise NotFoundError(NO_INDEX)
        return self.index

    async def search_text(self, text: str, k: int, filters: SearchFilters) -> SearchResult:
        """Hits for one text query, computed in a batch with the queries that arrive with it."""
        self.require_index()
        hits = await self.searcher.submit((text, k, filters))
        return SearchResult(text, self.model_name, hits)

    def _search_batch(self, queries: list[SearchKey]) -> list[list]:
        """Hits for a micro-batch of (text, k, filters) queries (``search_text_batch``), in a
        free search slot."""
        idx = self.require_index()
        enc = self.encoder()
        with self.search_slots:
            memory = self.memory
            try:
                return search_text_batch(idx, queries, model=enc, memory=memory)
            except InputError:
                if memory is None or memory.fits():
                    raise
                log.warning(  # the index grew past the memory limit while serving
                    "the index no longer fits in %d MiB: searching through LanceDB from now on",
                    memory.max_bytes // MIB,
                )
                self.memory = None
                return search_text_batch(idx, queries, model=enc)

    def run_search(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a free search slot (call from a worker thread)."""
        with self.search_slots:
            return fn(*args, **kwargs)

    # -- start-up and stats --------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model and the index's vectors before the first request, then take every
        object alive at that point out of the garbage collector's reach (``gc.freeze``).

        A full collection walks every object the process holds (the modules of torch, LanceDB
        and FastAPI, the model): under load those walks stalled every request in flight every
        few seconds and set the p99 (bench/load.py: p99 2.2x the p50 before, 1.6x after).
        Frozen objects are never collected, which is what objects that live as long as the
        server want.
        """
        self.model()
        if self.memory is not None:
            try:
                with reading(self.index):
                    rows = self.memory.load()
                log.info("%d vectors of the index held in memory", rows)
            except InputError as exc:
                log.warning("%s; text searches go to LanceDB", exc)
                self.memory = None
        gc.collect()
        gc.freeze()

    def index_stats(self) -> dict:
        """The served index's stats, recomputed only when its table changed (they read every
        row's path and walk the folder: ~40 ms at 100,000 chips; the page asks on every load).
        The folder is named by its last component only: clients never learn server paths."""
        idx = self.require_index()
        version = idx.version
        cached = self._stats
        if cached is None or cached[0] != version:
            stats = dict(describe_index(idx))
            stats["index"] = idx.directory.name
            cached = self._stats = (version, stats)
        return cached[1]
