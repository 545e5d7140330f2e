"""A curated dataset on disk: Parquet parts of records, a manifest of every step, written atomically.

Layout of a dataset folder ``DS``::

    DS/manifest.json          name, record count, and every step that made it (command,
                              inputs, counts, seconds, what was removed and why)
    DS/records/part-00000.parquet ...   the records (schema: skylens.curate.records.SCHEMA)
    DS/removed.jsonl          (steps that drop records) one line per removed record:
                              {"id", "reason", "match", "score"}

Every step reads a dataset and writes a NEW one, never in place. :class:`DatasetWriter` writes
into a hidden sibling folder ``.DS.partial-<random>`` and renames it to ``DS`` only when the step
finished and the manifest is written, so a killed step never leaves a folder that looks
complete (a folder is a dataset only if it holds ``manifest.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skylens.curate.records import SCHEMA, Record, from_table, to_table
from skylens.errors import InputError

FORMAT = "skylens-curated/1"
MANIFEST = "manifest.json"
PART_ROWS = 2000  # records per Parquet part: small enough to stream, large enough to compress


@dataclass
class CuratedDataset:
    """An existing curated dataset (read side).

    Attributes:
        path: the dataset folder.
        manifest: its parsed ``manifest.json``.
    """

    path: Path
    manifest: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.manifest.get("count", 0))

    @property
    def parts(self) -> list[Path]:
        return sorted((self.path / "records").glob("part-*.parquet"))

    def batches(
        self, batch_size: int = 256, columns: list[str] | None = None
    ) -> Iterator[list[Record]]:
        """Records in batches of at most ``batch_size`` (streamed part by part)."""
        for part in self.parts:
            pf = pq.ParquetFile(part)
            for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
                yield from_table(batch)

    def records(self, columns: list[str] | None = None) -> Iterator[Record]:
        for batch in self.batches(columns=columns):
            yield from batch

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """All records as one pyarrow Table."""
        tables = [pq.read_table(p, columns=columns) for p in self.parts]
        if not tables:
            return to_table([]).select(columns) if columns else to_table([])
        return pa.concat_tables(tables)

    def removed(self) -> list[dict]:
        """The ``removed.jsonl`` lines of the step that made this dataset (empty if none)."""
        p = self.path / "removed.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def open_dataset(path: str | os.PathLike[str]) -> CuratedDataset:
    """Open a curated dataset folder; InputError naming it when it is not a complete one."""
    p = Path(path).expanduser()
    man = p / MANIFEST
    if not p.is_dir():
        raise InputError(f"{p}: curated dataset folder not found")
    if not man.is_file():
        raise InputError(
            f"{p}: not a complete curated dataset (no {MANIFEST}; a step writing it may have "
            f"been interrupted)"
        )
    try:
        manifest = json.loads(man.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{man}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{man}: not a {FORMAT} manifest (format={manifest.get('format')!r})")
    return CuratedDataset(p, manifest)


class DatasetWriter:
    """Write records into a new dataset atomically; use as a context manager.

    >>> with DatasetWriter(out, name="ucm", step=step_info) as w:   # doctest: +SKIP
    ...     w.write(records)
    ...     w.removed("abc", "exact duplicate", match="def")

    On a clean exit the manifest is written (the parent's steps plus this one) and the temporary
    folder renamed to ``out``; on an exception the temporary folder is deleted.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        step: dict[str, Any],
        parent: CuratedDataset | None = None,
        name: str | None = None,
        overwrite: bool = False,
        started: float | None = None,
    ) -> None:
        """``started``: ``time.time()`` when the step began, if before the writer (the manifest's
        ``seconds`` then include the work done before writing, e.g. dedupe's features)."""
        self.out = Path(out).expanduser()
        if self.out.exists() and not overwrite:
            raise InputError(
                f"{self.out}: already exists; choose a new --out (steps never write in place)"
            )
        if parent is not None and self.out.resolve() == parent.path.resolve():
            raise InputError(f"{self.out}: the output must differ from the input dataset")
        self.step = dict(step)
        self.parent = parent
        self.name = name or (parent.manifest.get("name") if parent else None) or self.out.name
        self.overwrite = overwrite
        self.count = 0
        self._buffer: list[Record] = []
        self._parts = 0
        self._removed = None
        self._removed_counts: dict[str, int] = {}
        self._t0 = started if started is not None else time.time()
        self.tmp = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> DatasetWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        (self.tmp / "records").mkdir(parents=True)
        return self

    def write(self, records: Iterable[Record]) -> None:
        """Buffer records; full parts of ``PART_ROWS`` go to disk."""
        for rec in records:
            self._buffer.append(rec)
            if len(self._buffer) >= PART_ROWS:
                self._flush()

    def removed(self, record_id: str, reason: str, **detail: Any) -> None:
        """Log one dropped record and why (``removed.jsonl``; counted in the manifest)."""
        if self._removed is None:
            self._removed = open(self.tmp / "removed.jsonl", "w", encoding="utf-8")
        self._removed.write(json.dumps({"id": record_id, "reason": reason, **detail}) + "\n")
        self._removed_counts[reason] = self._removed_counts.get(reason, 0) + 1

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = to_table(self._buffer)
        pq.write_table(table, self.tmp / "records" / f"part-{self._parts:05d}.parquet")
        self._parts += 1
        self.count += len(self._buffer)
        self._buffer = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._removed is not None:
            self._removed.close()
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._flush()
            self._write_manifest()
            if self.out.exists() and self.overwrite:
                shutil.rmtree(self.out)
            os.rename(self.tmp, self.out)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _write_manifest(self) -> None:
        steps = list(self.parent.manifest.get("steps", [])) if self.parent else []
        step = {
            **self.step,
            "input_count": self.parent.count if self.parent else self.step.get("input_count"),
            "output_count": self.count,
            "removed": dict(sorted(self._removed_counts.items())),
            "seconds": round(time.time() - self._t0, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        steps.append({k: v for k, v in step.items() if v is not None})
        manifest = {
            "format": FORMAT,
            "name": self.name,
            "count": self.count,
            "schema": SCHEMA.names,
            "steps": steps,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
