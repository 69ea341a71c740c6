"""Ingest: sources -> cleaned rows -> an immutable dataset version (or the existing one).

Memory stays bounded: raw batches stream through cleaning into Parquet parts on local disk;
only 8-byte dedup keys (and a label code) per accepted row are kept in RAM. Nothing reaches the
store until the version id is known, so re-ingesting the same input writes nothing.
"""

from __future__ import annotations

import os
import queue
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.hashing import sha256_of_file
from components.common.layout import check_name
from components.common.storage import Store
from components.dataset import versioning as v
from components.dataset.schema import ACCEPTED_SCHEMA, QUARANTINE_SCHEMA
from components.ingest.clean import Cleaner
from components.ingest.config import CleaningConfig, SourceSettings
from components.ingest.readers import SourceReader, discover

PART_ROWS = 1_000_000
ROW_GROUP_ROWS = 128 * 1024


@dataclass
class IngestResult:
    dataset: str
    version: str
    parent: str | None
    new: bool
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    quarantine_uri: str | None
    manifest_uri: str
    rows_total: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _PartWriter:
    """Rolls accepted rows into Parquet parts of at most `part_rows` rows in a local folder."""

    def __init__(self, folder: str, schema: pa.Schema, stem: str, part_rows: int = PART_ROWS):
        self.folder, self.schema, self.stem, self.part_rows = folder, schema, stem, part_rows
        self.parts: list[str] = []
        self.counts: list[int] = []
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if self._writer is None or self.counts[-1] >= self.part_rows:
                self._roll()
            take = min(table.num_rows - offset, self.part_rows - self.counts[-1])
            self._writer.write_table(table.slice(offset, take), row_group_size=ROW_GROUP_ROWS)
            self.counts[-1] += take
            offset += take

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = os.path.join(self.folder, f"{self.stem}-{len(self.parts):05d}.parquet")
        # Dictionary-encode only the low-cardinality columns: trying it on text costs time for nothing.
        low_cardinality = [c for c in ("label", "source", "source_uri", "reason") if c in self.schema.names]
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", write_statistics=False,
                                        use_dictionary=low_cardinality)
        self.parts.append(path)
        self.counts.append(0)

    def close(self) -> list[tuple[str, int, str, int]]:
        if self._writer is not None:
            self._writer.close()
        return [(p, n, sha256_of_file(p), os.path.getsize(p)) for p, n in zip(self.parts, self.counts,
                                                                             strict=True)]


class _Background:
    """Runs `work(item)` for queued items in one thread, in order, with a bounded queue.

    Arrow's Parquet encoding and decoding release the GIL, so reading the next batch and writing
    the last one overlap with the Python-bound cleaning of the current one.
    """

    _DONE = object()

    def __init__(self, work, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._work = work
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self._work(item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def put(self, item) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _prefetch(iterator, depth: int = 2):
    """Yield from `iterator`, producing up to `depth` items ahead in a background thread."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(item)
            items.put(done)
        except BaseException as exc:
            items.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def ingest(sources: list[str], dataset: str, store: Store, settings: SourceSettings,
           cleaning: CleaningConfig, parent: str | None = "latest", part_rows: int = PART_ROWS,
           batch_rows: int = 65_536, workdir: str | None = None,
           code_version: str = "unknown") -> IngestResult:
    """Read, clean and version `sources` as a child of `parent` ('latest', an id, or None)."""
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        return now

    check_name(dataset)
    store.check()  # fail fast (store down, bad credentials) before reading anything
    files = discover(sources, settings)
    parent_ref = v.resolve_parent(store, dataset, parent) if parent else None
    p_keys, digest_state = v.parent_keys(store, parent_ref)

    mark = phase("prepare", started)
    cleaner = Cleaner(cleaning, p_keys, select=source_selector(settings))
    reader = SourceReader(settings, batch_rows=batch_rows, workdir=workdir)
    with tempfile.TemporaryDirectory(prefix="conveyor-ingest-", dir=workdir) as tmp:
        accepted_out = _PartWriter(tmp, ACCEPTED_SCHEMA, "part", part_rows)
        quarantine_out = _PartWriter(tmp, QUARANTINE_SCHEMA, "quarantine", part_rows=2**62)

        def write(pair):
            accepted, quarantined = pair
            if accepted.num_rows:
                accepted_out.write(accepted)
            if quarantined.num_rows:
                quarantine_out.write(quarantined)

        writer = _Background(write)
        try:
            for raw in _prefetch(reader.read(files)):
                accepted, quarantined = cleaner.clean(raw)
                writer.put((_assign_sources(accepted, settings), quarantined))
        finally:
            writer.close()
        new_parts = accepted_out.close()
        quarantine = (quarantine_out.close() or [None])[0]
        mark = phase("read_clean_write", mark)

        stats = cleaner.stats
        if stats.rows_read != stats.rows_accepted + stats.rows_quarantined:
            raise AssertionError("row accounting broke")  # Cleaner checks per batch; belt and braces

        digest_state.merge(cleaner.digest)
        digest = digest_state.hexdigest()
        rows_total = digest_state.count
        del p_keys
        cleaning_dict = cleaning.model_dump(mode="json")
        version = v.version_id(digest, ACCEPTED_SCHEMA, cleaning_dict)
        mark = phase("digest", mark)
        base = dict(dataset=dataset, version=version, rows_read=stats.rows_read,
                    rows_accepted=stats.rows_accepted, rows_quarantined=stats.rows_quarantined,
                    quarantine_reasons=dict(sorted(stats.by_reason.items())),
                    manifest_uri=store.url(v.manifest_key(dataset, version)))

        if store.exists(v.manifest_key(dataset, version)):
            existing = v.read_manifest(store, dataset, version)
            return IngestResult(**base, parent=existing.get("parent"), new=False,
                                quarantine_uri=_quarantine_uri(store, dataset, existing),
                                rows_total=existing["rows"]["total"],
                                seconds=time.perf_counter() - started, phase_seconds=phases)

        own_parts = [{"path": f"{version}/part-{i:05d}.parquet", "rows": rows, "sha256": sha, "bytes": size}
                     for i, (_p, rows, sha, size) in enumerate(new_parts)]
        inherited = [dict(p, inherited_from=p.get("inherited_from") or parent_ref.version)
                     for p in (parent_ref.parts if parent_ref else [])]
        by_label = dict(parent_ref.manifest["rows"]["by_label"]) if parent_ref else {}
        for label, count in stats.by_label.items():
            by_label[label] = by_label.get(label, 0) + count
        manifest = {
            "format": v.MANIFEST_FORMAT,
            "dataset": dataset,
            "version": version,
            "parent": parent_ref.version if parent_ref else None,
            "created_at": v.now_iso(),
            "code_version": code_version,
            "content_digest": digest,
            "rows": {"read": stats.rows_read, "accepted": stats.rows_accepted,
                     "quarantined": stats.rows_quarantined, "total": rows_total,
                     "by_reason": dict(sorted(stats.by_reason.items())),
                     "by_label": dict(sorted(by_label.items()))},
            "schema": v.schema_fingerprint(ACCEPTED_SCHEMA),
            "cleaning": cleaning_dict,
            "source_settings": settings.model_dump(mode="json"),
            "sources": list(sources),
            "formats": reader.formats_seen,
            "parts": inherited + own_parts,
            "quarantine": None if quarantine is None else {
                "path": f"{version}/quarantine.parquet", "rows": quarantine[1], "sha256": quarantine[2],
                "bytes": quarantine[3]},
        }
        v.commit(store, dataset, version, new_parts, quarantine, manifest)
        phase("commit", mark)
        return IngestResult(**base, parent=manifest["parent"], new=True,
                            quarantine_uri=_quarantine_uri(store, dataset, manifest), rows_total=rows_total,
                            seconds=time.perf_counter() - started, phase_seconds=phases)


def read_clean(sources: list[str], settings: SourceSettings, cleaning: CleaningConfig) -> tuple[pa.Table, int]:
    """Read and clean sources in memory, without versioning (e.g. to replay a batch as traffic).
    Returns (accepted rows, quarantined row count)."""
    reader = SourceReader(settings)
    cleaner = Cleaner(cleaning, None, select=source_selector(settings))
    accepted, quarantined = [], 0
    for raw in reader.read(discover(sources, settings)):
        ok, bad = cleaner.clean(raw)
        accepted.append(_assign_sources(ok, settings))
        quarantined += bad.num_rows
    table = pa.concat_tables(accepted) if accepted else ACCEPTED_SCHEMA.empty_table()
    return table, quarantined


def _quarantine_uri(store: Store, dataset: str, manifest: dict[str, Any]) -> str | None:
    q = manifest.get("quarantine")
    return store.url(f"{v.dataset_prefix(dataset)}/{q['path']}") if q else None


def _topics(text, source, settings: SourceSettings):
    """Keyword rules overwrite `source` (first matching rule wins, case-insensitive)."""
    if not settings.source_keywords:
        return source
    lowered = pc.utf8_lower(text)
    for name, words in reversed(settings.source_keywords):
        pattern = "|".join(_regex_escape(w.lower()) for w in words)
        source = pc.if_else(pc.fill_null(pc.match_substring_regex(lowered, pattern), False), pa.scalar(name),
                            source)
    return source


def _assign_sources(table: pa.Table, settings: SourceSettings) -> pa.Table:
    if not settings.source_keywords:
        return table
    source = _topics(table.column("text"), table.column("source"), settings)
    return table.set_column(table.schema.get_field_index("source"), "source", source)


def source_selector(settings: SourceSettings):
    """The Cleaner's `select` for settings.select_sources (None when every source is kept)."""
    if not settings.select_sources:
        return None
    wanted = pa.array(settings.select_sources, pa.string())

    def select(text, source):
        topics = _topics(text, source, settings)
        keep = pc.fill_null(pc.is_in(topics, value_set=wanted), False)
        return keep, lambda i: f"source {topics[i].as_py()!r} is not one of {settings.select_sources}"

    return select


def _regex_escape(word: str) -> str:
    return re.escape(word)
