"""A knowledge base on disk: one LanceDB table of passages plus a BM25 index, in one folder.

Layout of ``DIR``::

    skylens-kb.json   what built it: embedding model name + version, text space, counts
    lancedb/          table ``passages``: id, kind (text | image | place), source, page, chunk,
                      title, text, lat, lon, place, vector (text space), joint (image-text space)
    bm25/             ``bm25s`` index over the passages' text (Lù, "BM25S", 2024), ids.json

Two embeddings per passage. ``vector`` is the text-to-text space used for text questions: the
sentence tower of the model when it has one (all-MiniLM-L6-v2 for ``default``: better for
passage retrieval than the image-aligned projection), else the model's text embedding.
``joint`` is the model's image-text space: a described image stores its *image* embedding, a
text passage its text embedding, so an image query finds both. A knowledge base answers only
queries embedded by the model it was built with; another model is refused
(``IndexMismatchError``) with the name of the right one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from skylens._lazy import lazy_import
from skylens.errors import IndexMismatchError, InputError, NotFoundError
from skylens.models.base import ImageTextEncoder, load

META_FILE = "skylens-kb.json"
DB_DIR = "lancedb"
BM25_DIR = "bm25"
TABLE = "passages"
SCHEMA_VERSION = 1
KINDS = ("text", "image", "place")
TEXT_COLUMNS = ["id", "kind", "source", "page", "chunk", "title", "text", "lat", "lon", "place"]


class KBEmbedder:
    """The embeddings of one knowledge base, from one ``ImageTextEncoder``.

    Args:
        model: the encoder or its name for ``skylens.load``.
    """

    def __init__(self, model: ImageTextEncoder | str = "default") -> None:
        self.model = load(model) if isinstance(model, str) else model
        self.model.require(ImageTextEncoder)
        tower = getattr(self.model, "text_tower", None)
        self._sentence = tower.encode if tower is not None and hasattr(tower, "encode") else None
        self.text_space = (
            f"sentence:{getattr(tower, 'digest', 'tower')}" if self._sentence else "joint"
        )

    def identity(self) -> dict:
        return {
            "model_name": self.model.name,
            "model_version": self.model.version,
            "text_space": self.text_space,
        }

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text-to-text space (L2-normalised rows)."""
        if not texts:
            return np.zeros((0, self.text_dim), np.float32)
        vecs = self._sentence(list(texts)) if self._sentence else self.model.encode_texts(texts)
        return np.asarray(vecs, np.float32)

    def joint_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode_texts(list(texts)), np.float32)

    def images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.encode_images(list(images)), np.float32)

    @property
    def text_dim(self) -> int:
        return (
            int(self.texts(["dimension probe"]).shape[1])
            if self._sentence
            else self.model.embed_dim
        )


@dataclass
class PassageRecord:
    """One row to store; ``vector``/``joint`` are filled by :meth:`KnowledgeBase.add`."""

    id: str
    kind: str
    source: str
    text: str
    page: int = 1
    chunk: int = 0
    title: str = ""
    lat: float | None = None
    lon: float | None = None
    place: str = ""
    image_rgb: np.ndarray | None = None  # described images: embedded into ``joint``


def _schema(text_dim: int, joint_dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("kind", pa.string()),
            ("source", pa.string()),
            ("page", pa.int32()),
            ("chunk", pa.int32()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("place", pa.string()),
            ("vector", pa.list_(pa.float32(), text_dim)),
            ("joint", pa.list_(pa.float32(), joint_dim)),
        ]
    )


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class KnowledgeBase:
    """A knowledge-base folder opened for reading and appending (see the module docstring)."""

    def __init__(self, directory: Path, meta: dict, embedder: KBEmbedder) -> None:
        self.dir, self.meta, self.embedder = directory, meta, embedder
        self._db = lazy_import("lancedb", "kb").connect(str(directory / DB_DIR))
        self._table = self._db.open_table(TABLE)
        self._bm25 = None
        self._bm25_ids: list[str] = []

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, directory: str | Path, model: ImageTextEncoder | str = "default"
    ) -> KnowledgeBase:
        """A new, empty knowledge base in ``directory`` (or the existing one, if it matches)."""
        d = Path(directory)
        if (d / META_FILE).is_file():
            return cls.open(d, model)
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise InputError(f"{d}: exists, is not empty and is not a skylens knowledge base")
        embedder = KBEmbedder(model)
        d.mkdir(parents=True, exist_ok=True)
        db = lazy_import("lancedb", "kb").connect(str(d / DB_DIR))
        db.create_table(TABLE, schema=_schema(embedder.text_dim, embedder.model.embed_dim))
        meta = {
            **embedder.identity(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schema_version": SCHEMA_VERSION,
        }
        _write_json(d / META_FILE, meta)
        return cls(d, meta, embedder)

    @classmethod
    def open(
        cls, directory: str | Path, model: ImageTextEncoder | str | None = None
    ) -> KnowledgeBase:
        """Open ``directory``; ``model`` defaults to the one it was built with.

        Raises:
            NotFoundError: not a knowledge base.
            IndexMismatchError: ``model`` is not the model the knowledge base was built with.
        """
        d = Path(directory)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            raise NotFoundError(
                f"{d}: not a skylens knowledge base (no {META_FILE}); run `skylens kb build`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, OSError) as exc:
            raise InputError(f"{meta_path}: unreadable ({exc})") from None
        embedder = KBEmbedder(model if model is not None else meta["model_name"])
        got = embedder.identity()
        if any(got[k] != meta.get(k) for k in got):
            raise IndexMismatchError(
                f"{d}: knowledge base built with model '{meta.get('model_name')}' "
                f"(version {meta.get('model_version')}, text space {meta.get('text_space')}); "
                f"this query uses '{got['model_name']}' (version {got['model_version']}). "
                f"Query it with --model {meta.get('model_name')} or rebuild it with the new model."
            )
        return cls(d, meta, embedder)

    # -- writing -------------------------------------------------------------------------------
    def ids(self) -> set[str]:
        return set(self._table.to_arrow().column("id").to_pylist()) if self.count() else set()

    def count(self) -> int:
        return int(self._table.count_rows())

    def add(self, records: Sequence[PassageRecord], batch_size: int = 64, progress=None) -> int:
        """Embed and append ``records`` whose id is not stored yet; returns how many were added.

        The BM25 index is rebuilt over all passages afterwards (seconds for 10^5 passages).
        """
        have = self.ids()
        todo, seen = [], set()
        for r in records:
            if r.kind not in KINDS:
                raise InputError(f"passage {r.id}: kind must be one of {KINDS}, got '{r.kind}'")
            if r.id not in have and r.id not in seen:
                seen.add(r.id)
                todo.append(r)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            self._table.add(self._embed_rows(batch))
            if progress:
                progress(len(batch))
        if todo or not (self.dir / BM25_DIR / "ids.json").is_file():
            self.rebuild_bm25()
        self.meta["passages"] = self.count()
        self.meta["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_json(self.dir / META_FILE, self.meta)
        return len(todo)

    def _embed_rows(self, batch: Sequence[PassageRecord]) -> pa.Table:
        vectors = self.embedder.texts([r.text for r in batch])
        joint = np.zeros((len(batch), self.embedder.model.embed_dim), np.float32)
        is_image = [i for i, r in enumerate(batch) if r.image_rgb is not None]
        is_text = [i for i in range(len(batch)) if i not in set(is_image)]
        if is_image:
            joint[is_image] = self.embedder.images([batch[i].image_rgb for i in is_image])
        if is_text:
            joint[is_text] = self.embedder.joint_texts([batch[i].text for i in is_text])
        rows = {c: [getattr(r, c) for r in batch] for c in TEXT_COLUMNS}
        rows["vector"], rows["joint"] = list(vectors), list(joint)
        return pa.Table.from_pydict(rows, schema=self._table.schema)

    def rebuild_bm25(self) -> None:
        bm25s = lazy_import("bm25s", "kb")
        table = self._table.to_arrow().select(["id", "title", "text"])
        ids = table.column("id").to_pylist()
        texts = [
            f"{t} {x}"
            for t, x in zip(
                table.column("title").to_pylist(), table.column("text").to_pylist(), strict=True
            )
        ]
        out = self.dir / BM25_DIR
        out.mkdir(exist_ok=True)
        retriever = bm25s.BM25()
        if texts:
            retriever.index(
                bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False
            )
            retriever.save(str(out), show_progress=False)
        _write_json(out / "ids.json", {"ids": ids})
        self._bm25, self._bm25_ids = (retriever if texts else None), ids

    # -- reading -------------------------------------------------------------------------------
    def _load_bm25(self):
        if self._bm25 is None and (self.dir / BM25_DIR / "ids.json").is_file():
            self._bm25_ids = json.loads((self.dir / BM25_DIR / "ids.json").read_text())["ids"]
            if self._bm25_ids:
                bm25s = lazy_import("bm25s", "kb")
                self._bm25 = bm25s.BM25.load(str(self.dir / BM25_DIR), show_progress=False)
        return self._bm25

    def bm25_search(self, query: str, k: int) -> list[tuple[str, float]]:
        """(id, BM25 score) of the best keyword matches; only passages sharing a term."""
        retriever = self._load_bm25()
        if retriever is None:
            return []
        bm25s = lazy_import("bm25s", "kb")
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if not tokens or not tokens[0]:
            return []
        k = min(k, len(self._bm25_ids))
        docs, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [
            (self._bm25_ids[int(d)], float(s))
            for d, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        ]

    def vector_search(
        self, vector: np.ndarray, k: int, column: str = "vector"
    ) -> list[tuple[str, float]]:
        """(id, cosine similarity) of the nearest passages in ``column`` (vector | joint)."""
        if not self.count():
            return []
        q = self._table.search(np.asarray(vector, np.float32), vector_column_name=column)
        table = q.distance_type("cosine").limit(k).select(["id", "_distance"]).to_arrow()
        return [
            (i, 1.0 - float(d))
            for i, d in zip(
                table.column("id").to_pylist(), table.column("_distance").to_pylist(), strict=True
            )
        ]

    def rows(self, ids: Sequence[str]) -> dict[str, dict]:
        """Stored passages (text columns, no vectors) by id."""
        if not ids:
            return {}
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
        table = (
            self._table.search()
            .where(f"id IN ({quoted})")
            .select(TEXT_COLUMNS)
            .limit(None)
            .to_arrow()
        )
        return {r["id"]: r for r in table.to_pylist()}

    def info(self) -> dict:
        """What the knowledge base holds: counts by kind, sources and the embedding identity."""
        table = self._table.to_arrow().select(["kind", "source"]) if self.count() else None
        kinds = {k: 0 for k in KINDS}
        sources: set[str] = set()
        if table is not None:
            for kind, src in zip(
                table.column("kind").to_pylist(), table.column("source").to_pylist(), strict=True
            ):
                kinds[kind] += 1
                sources.add(src)
        return {
            "path": str(self.dir),
            **{
                k: self.meta.get(k)
                for k in ("model_name", "model_version", "text_space", "created", "updated")
            },
            "passages": self.count(),
            "by_kind": kinds,
            "sources": len(sources),
        }
