"""Ingest: sources -> cleaned rows -> an immutable dataset version (or the existing one).

Memory stays flat whatever the input size: raw batches stream through cleaning into Parquet parts
on local disk, and dedup keeps at most `dedup_budget_keys` keys in RAM, spilling older keys (and a
large parent's) to sorted runs on local disk; `dedup.resolve` then finds the duplicates that
spanned windows and they are moved from the parts to the quarantine (phase 3 below). Nothing
reaches the store until the version id is known, so re-ingesting the same input writes nothing.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.hashing import sha256_of_file
from components.common.logs import emit
from components.common.storage import Store
from components.dataset import versioning as v
from components.dataset.manifest import Part
from components.dataset.schema import (
    ACCEPTED_SCHEMA,
    QUARANTINE_SCHEMA,
    ContentDigest,
    without_raw,
)
from components.stages.ingest import dedup
from components.stages.ingest.artifacts import IngestOutcome
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.core import RAW_CHANGES_SCHEMA, Cleaner, CleanStats, prepare
from components.stages.ingest.readers import SourceFile, SourceReader, discover
from components.stages.ingest.topics import assign_sources, source_selector
from components.stages.ingest.workers import prepared_in_order, resolve_workers

PART_ROWS = 1_000_000
ROW_GROUP_ROWS = 128 * 1024
# Spawning a worker (Python, pyarrow, numpy) costs about a second; below this, one process wins.
PARALLEL_MIN_BYTES = 64 * 2**20


class PhaseClock:
    """Seconds per phase of one ingest (IngestOutcome.phase_seconds), and in all."""

    def __init__(self):
        self.started = self.mark = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.mark, 3)
        self.mark = now

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class _PartWriter:
    """Rolls accepted rows into Parquet parts of at most `part_rows` rows in a local folder."""

    def __init__(self, folder: str, schema: pa.Schema, stem: str, part_rows: int = PART_ROWS,
                 row_group_rows: int = ROW_GROUP_ROWS, statistics: bool = False):
        self.folder, self.schema, self.stem, self.part_rows = folder, schema, stem, part_rows
        self.row_group_rows, self.statistics = row_group_rows, statistics
        self.parts: list[str] = []
        self.counts: list[int] = []
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            if self._writer is None or self.counts[-1] >= self.part_rows:
                self._roll()
            take = min(table.num_rows - offset, self.part_rows - self.counts[-1])
            self._writer.write_table(table.slice(offset, take), row_group_size=self.row_group_rows)
            self.counts[-1] += take
            offset += take

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = os.path.join(self.folder, f"{self.stem}-{len(self.parts):05d}.parquet")
        self._writer = parquet_writer(path, self.schema, self.statistics)
        self.parts.append(path)
        self.counts.append(0)

    def close(self) -> list[v.LocalFile]:
        if self._writer is not None:
            self._writer.close()
        return [v.LocalFile(p, n, sha256_of_file(p), os.path.getsize(p))
                for p, n in zip(self.parts, self.counts, strict=True)]


def parquet_writer(path: str, schema: pa.Schema, statistics: bool = False) -> pq.ParquetWriter:
    # Dictionary-encode only the low-cardinality columns: trying it on text costs time for nothing.
    low_cardinality = [c for c in ("label", "source", "source_uri", "reason") if c in schema.names]
    return pq.ParquetWriter(path, schema, compression="zstd", write_statistics=statistics,
                            use_dictionary=low_cardinality)


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


class IngestProgress:
    """Rows per second and bytes read of the total, at most every `interval_s` and only once the
    ingest has run that long: a small input prints nothing, a large one a line every few seconds."""

    def __init__(self, log, files: list[SourceFile], interval_s: float = 5.0, clock=time.monotonic):
        self.log, self.files, self.interval_s, self.clock = log, len(files), interval_s, clock
        self.started = self.last = clock()
        # Known without a request only for local files; S3 sources show bytes read so far.
        sizes = [f.store.local_path(f.key) for f in files]
        self.total = sum(os.path.getsize(p) for p in sizes) if all(sizes) else None

    def update(self, rows: int, bytes_read: int, files_done: int) -> None:
        now = self.clock()
        if self.log is None or now - self.last < self.interval_s:
            return
        self.last = now
        seconds = now - self.started
        rate = rows / seconds if seconds else 0.0
        of_total = f" of {self.total / 1e6:,.1f}" if self.total else ""
        emit(self.log, f"ingest: {rows:,} rows read ({rate:,.0f} rows/s), {bytes_read / 1e6:,.1f}{of_total} MB, "
                       f"{files_done}/{self.files} files", event="ingest_progress", rows=rows,
             rows_per_s=round(rate, 1), bytes_read=bytes_read, bytes_total=self.total, files_done=files_done,
             files=self.files)


def ingest(sources: list[str], dataset: str, store: Store, settings: SourceSettings,
           cleaning: CleaningConfig, parent: str | None = "latest", part_rows: int = PART_ROWS,
           batch_rows: int = 65_536, workdir: str | None = None,
           code_version: str = "unknown", dedup_budget_keys: int = dedup.DEFAULT_BUDGET_KEYS,
           workers: int | None = None, parallel_min_bytes: int = PARALLEL_MIN_BYTES, log=None) -> IngestOutcome:
    """Read, clean and version `sources` as a child of `parent` ('latest', an id, or None).

    dedup_budget_keys: how many dedup keys RAM holds (8 bytes each, ~3x while merging); the
    result is the same for any budget, only the parts' row boundaries can differ.
    workers: processes that decode, validate and hash batches (data.workers; None: the usable
    cores). The result is the same for any number. Inputs under `parallel_min_bytes` (local files
    of known size) are cleaned in this process: starting workers costs more than they save."""
    clock = PhaseClock()
    new = v.NewVersion(store, dataset, parent)
    files = discover(sources, settings)

    with tempfile.TemporaryDirectory(prefix="conveyor-ingest-", dir=workdir) as tmp:
        digest_state, parent_index = _parent_side(new, cleaning, tmp, dedup_budget_keys)
        seen = dedup.WindowIndex(tmp, dedup_budget_keys)
        clock.done("prepare")
        cleaner = Cleaner(cleaning, parent_index, select=source_selector(settings), seen=seen)
        reader = SourceReader(settings, batch_rows=batch_rows, workdir=workdir)
        outputs = _CleanedOutputs(tmp, settings, cleaning, part_rows)
        writer = _Background(outputs.write)
        progress = IngestProgress(log, files)
        workers = resolve_workers(workers)
        if workers > 1 and progress.total is not None and progress.total < parallel_min_bytes:
            workers = 1  # starting workers would cost more than they save
        batches = _prefetch(reader.read(files))
        prepared = (prepared_in_order(batches, cleaning, settings, workers) if workers > 1
                    else ((raw, prepare(raw, cleaning, cleaner.select)) for raw in batches))
        try:
            for raw, ready in prepared:
                writer.put(cleaner.admit(raw, ready))
                progress.update(cleaner.stats.rows_read, reader.bytes_read, reader.files_done)
        finally:
            writer.close()
        new_parts, quarantine, raw_changes = outputs.close()
        clock.done("read_clean_write")

        verdicts = dedup.resolve(tmp, seen, cleaner.parent, cleaner.stats.rows_quarantined)
        if verdicts.moved or verdicts.relabelled:
            new_parts, quarantine = _apply_verdicts(tmp, new_parts, quarantine, raw_changes, verdicts, cleaner,
                                                    part_rows)
        del seen, parent_index
        clock.done("dedup_across_windows")

        stats = cleaner.stats
        if stats.rows_read != stats.rows_accepted + stats.rows_quarantined:
            raise AssertionError("row accounting broke")  # Cleaner checks per batch; belt and braces

        digest_state.merge(cleaner.digest)
        version = new.seal(digest_state, ACCEPTED_SCHEMA, cleaning.identity())
        clock.done("digest")

        if (existing := new.existing()) is not None:
            return version_result(store, dataset, stats, existing, False, clock).model_copy(update={"workers": workers})

        manifest = build_manifest(dataset, version, new.parent, stats, digest_state, cleaning, settings, sources,
                                  reader.formats_seen, *_manifest_entries(version, new_parts, quarantine),
                                  code_version)
        new.commit(new_parts, quarantine, manifest)
        clock.done("commit")
        return version_result(store, dataset, stats, manifest, True, clock).model_copy(update={"workers": workers})


class _CleanedOutputs:
    """Where cleaned batches go on local disk: accepted rows into parts (sources assigned), the
    quarantine (with or without raw bytes, by cleaning.quarantine_raw), and the raw changes of
    accepted rows that dedup's phase 3 reads back."""

    def __init__(self, tmp: str, settings: SourceSettings, cleaning: CleaningConfig, part_rows: int):
        self.settings, self.keep_raw = settings, cleaning.quarantine_raw
        self.accepted = _PartWriter(tmp, ACCEPTED_SCHEMA, "part", part_rows)
        self.quarantine = _PartWriter(tmp, QUARANTINE_SCHEMA, "quarantine", part_rows=2**62)
        # Row-group statistics on `seq` let phase 3 read only the row groups it needs.
        self.raw_changes = _PartWriter(tmp, RAW_CHANGES_SCHEMA, "raw-changes", part_rows=2**62,
                                       row_group_rows=16_384, statistics=True)

    def write(self, cleaned) -> None:
        if cleaned.accepted.num_rows:
            self.accepted.write(assign_sources(cleaned.accepted, self.settings))
        if cleaned.quarantined.num_rows:
            self.quarantine.write(cleaned.quarantined if self.keep_raw else without_raw(cleaned.quarantined))
        if cleaned.raw_changes.num_rows:
            self.raw_changes.write(cleaned.raw_changes)

    def close(self) -> tuple[list[v.LocalFile], v.LocalFile | None, v.LocalFile | None]:
        """The parts, the quarantine file and the raw changes file (None where no row went)."""
        return (self.accepted.close(), (self.quarantine.close() or [None])[0],
                (self.raw_changes.close() or [None])[0])


def _parent_side(new: v.NewVersion, cleaning: CleaningConfig, tmp: str,
                 budget_keys: int) -> tuple[ContentDigest, dedup.ParentKeys | None]:
    """The parent's rows in the child's content digest, and (with cleaning.dedup_against_parent)
    their keys for the duplicate checks, spilled to `tmp` beyond `budget_keys`."""
    if not cleaning.dedup_against_parent:  # the parent's rows still count in the child's content digest
        return new.parent_digest(), None
    digest_state = ContentDigest()
    parent_chunks = new.parent_keys(digest_state)
    parent_total = new.parent.manifest["rows"]["total"] if new.parent else 0
    return digest_state, dedup.ParentKeys(tmp, parent_chunks, parent_total, budget_keys)


def _manifest_entries(version: str, parts: list[v.LocalFile],
                      quarantine: v.LocalFile | None) -> tuple[list[Part], Part | None]:
    """The manifest's entries for the parts and the quarantine file `versioning.commit` uploads."""
    own_parts = [p.entry(f"{version}/part-{i:05d}.parquet") for i, p in enumerate(parts)]
    return own_parts, None if quarantine is None else quarantine.entry(f"{version}/quarantine.parquet")


def version_result(store: Store, dataset: str, stats: CleanStats, manifest: dict[str, Any], new: bool,
                   clock: PhaseClock) -> IngestOutcome:
    """What one ingest did (`stats`) and the version it made or found (`manifest`)."""
    version = manifest["version"]
    return IngestOutcome(dataset=dataset, version=version, parent=manifest.get("parent"), new=new,
                        rows_read=stats.rows_read, rows_accepted=stats.rows_accepted,
                        rows_quarantined=stats.rows_quarantined,
                        quarantine_uri=_quarantine_uri(store, dataset, manifest),
                        manifest_uri=store.url(v.manifest_key(dataset, version)),
                        rows_total=manifest["rows"]["total"],
                        quarantine_reasons=dict(sorted(stats.by_reason.items())),
                        seconds=clock.elapsed(), phase_seconds=clock.seconds)


def build_manifest(dataset: str, version: str, parent_ref: v.VersionRef | None, stats: CleanStats,
                   digest: ContentDigest, cleaning: CleaningConfig, settings: SourceSettings, sources: list[str],
                   formats: dict[str, int], own_parts: list[Part], quarantine: Part | None,
                   code_version: str) -> dict[str, Any]:
    """The manifest of a new version (any engine): `digest` covers the parent's rows and these."""
    inherited = [p.inherited(parent_ref.version) for p in parent_ref.parts] if parent_ref else []
    by_label = dict(parent_ref.manifest["rows"]["by_label"]) if parent_ref else {}
    for label, count in stats.by_label.items():
        by_label[label] = by_label.get(label, 0) + count
    return {
        "format": v.MANIFEST_FORMAT,
        "dataset": dataset,
        "version": version,
        "parent": parent_ref.version if parent_ref else None,
        "created_at": v.now_iso(),
        "code_version": code_version,
        "content_digest": digest.hexdigest(),
        "rows": {"read": stats.rows_read, "accepted": stats.rows_accepted,
                 "quarantined": stats.rows_quarantined, "total": digest.count,
                 "by_reason": dict(sorted(stats.by_reason.items())),
                 "by_label": dict(sorted(by_label.items())),
                 **({"email_text_from": dict(sorted(stats.text_from.items()))} if stats.text_from else {}),
                 **({"accepted_mime_defects": dict(sorted(stats.accepted_defects.items()))}
                    if stats.accepted_defects else {})},
        "schema": v.schema_fingerprint(ACCEPTED_SCHEMA),
        "cleaning": cleaning.model_dump(mode="json"),
        "source_settings": settings.model_dump(mode="json"),
        "sources": list(sources),
        "formats": dict(sorted(formats.items())),
        "parts": [p.entry() for p in inherited + own_parts],
        "quarantine": quarantine.entry() if quarantine else None,
    }


def _apply_verdicts(tmp: str, parts: list[v.LocalFile], quarantine: v.LocalFile | None,
                    raw_changes: v.LocalFile | None, verdicts: dedup.Verdicts, cleaner: Cleaner,
                    part_rows: int) -> tuple[list[v.LocalFile], v.LocalFile | None]:
    """Phase 3 of dedup: move the rows phase 2 found to be duplicates from the parts to the quarantine
    (with their raw bytes) and withdraw them from the cleaner's counts and digest, relabel in-window
    repeats of parent rows, and recount the quarantine's reasons. Streams one row group at a time;
    parts without a verdict are kept as they are."""
    keep_raw = cleaner.config.quarantine_raw
    moved_out = _PartWriter(tmp, QUARANTINE_SCHEMA, "moved", part_rows=2**62)
    kept_parts: list[v.LocalFile] = []
    first_seq = 0
    for part in parts:
        path, rows = part.path, part.rows
        flags = verdicts.candidate_flags(first_seq, first_seq + rows)
        if not flags.any():
            kept_parts.append(part)
            first_seq += rows
            continue
        source = pq.ParquetFile(path)
        rewritten = path + ".kept.parquet"
        out, offset, kept = parquet_writer(rewritten, ACCEPTED_SCHEMA), 0, 0
        for g in range(source.num_row_groups):
            table = source.read_row_group(g)
            group_flags = flags[offset:offset + table.num_rows]
            keep = group_flags == dedup.KEEP
            if not keep.all():
                moved_idx = np.flatnonzero(~keep)
                moved = table.take(pa.array(moved_idx))
                seqs = first_seq + offset + moved_idx
                moved_rows, text_from, defects = _as_quarantine(moved, group_flags[moved_idx], seqs, raw_changes)
                moved_out.write(moved_rows if keep_raw else without_raw(moved_rows))
                cleaner.withdraw(moved, text_from, defects)
                table = table.filter(pa.array(keep))
            if table.num_rows:
                out.write_table(table, row_group_size=ROW_GROUP_ROWS)
                kept += table.num_rows
            offset += len(group_flags)
        out.close()
        os.replace(rewritten, path)
        if kept:
            kept_parts.append(v.LocalFile(path, kept, sha256_of_file(path), os.path.getsize(path)))
        first_seq += rows
    moved = (moved_out.close() or [None])[0]
    quarantine = _rewrite_quarantine(tmp, quarantine, moved, verdicts)
    counts = pc.value_counts(pq.read_table(quarantine.path, columns=["reason"]).column("reason")).to_pylist() \
        if quarantine else []
    cleaner.recount_reasons({item["values"]: item["counts"] for item in counts})
    return kept_parts, quarantine


def _as_quarantine(moved: pa.Table, flags: np.ndarray, seqs: np.ndarray,
                   raw_changes: v.LocalFile | None) -> tuple[pa.Table, list[str], list[str]]:
    """The moved rows as quarantine rows (their raw bytes back where cleaning changed them), with the
    text sources and defects that were counted for them when they were admitted."""
    raw = moved.column("text").cast(pa.large_binary()).combine_chunks()
    text_from: list[str] = []
    defects: list[str] = []
    if raw_changes is not None:  # rows whose raw bytes were not their cleaned text, or with email notes
        lo, hi = int(seqs.min()), int(seqs.max())
        changes = pq.read_table(raw_changes.path, filters=[("seq", ">=", lo), ("seq", "<=", hi)])
        changes = changes.filter(pc.is_in(changes.column("seq"), value_set=pa.array(seqs, pa.int64())))
        if changes.num_rows:
            where = np.searchsorted(seqs, changes.column("seq").to_numpy())
            values = raw.to_pylist()
            for i, value in zip(where, changes.column("raw").to_pylist(), strict=True):
                if value is not None:
                    values[i] = value
            raw = pa.array(values, pa.large_binary())
            text_from = changes.column("text_from").drop_null().to_pylist()
            defects = [d for ds in changes.column("defects").drop_null().to_pylist() for d in ds.split(",")]
    reasons = np.where(flags == dedup.DUPLICATE_OF_PARENT, "duplicate_of_parent", "duplicate")
    table = pa.table({
        "reason": pa.array(reasons, pa.string()),
        "detail": pc.binary_join_element_wise("doc_id", moved.column("doc_id"), " "),
        "raw": raw,
        "label": moved.column("label"),
        "source": moved.column("source"),
        "source_uri": moved.column("source_uri"),
        "source_row": moved.column("source_row"),
    }, schema=QUARANTINE_SCHEMA)
    return table, text_from, defects


def _rewrite_quarantine(tmp: str, quarantine: v.LocalFile | None, moved: v.LocalFile | None,
                        verdicts: dedup.Verdicts) -> v.LocalFile | None:
    """One quarantine file again: the phase-1 rows (relabelled where phase 2 says) then the moved ones."""
    if moved is None and not verdicts.relabelled:
        return quarantine
    out = _PartWriter(tmp, QUARANTINE_SCHEMA, "quarantine-final", part_rows=2**62)
    offset = 0
    for path in [f.path for f in (quarantine, moved) if f is not None]:
        source = pq.ParquetFile(path)
        for g in range(source.num_row_groups):
            table = source.read_row_group(g)
            if quarantine is not None and path == quarantine.path and verdicts.relabelled:
                flags = verdicts.quarantine_flags(offset, offset + table.num_rows)
                if flags.any():
                    reason = pc.if_else(pa.array(flags.astype(bool)), pa.scalar("duplicate_of_parent"),
                                        table.column("reason"))
                    table = table.set_column(0, "reason", reason)
                offset += table.num_rows
            out.write(table)
    return out.close()[0]


def read_clean(sources: list[str], settings: SourceSettings, cleaning: CleaningConfig) -> tuple[pa.Table, int]:
    """Read and clean sources in memory, without versioning (e.g. to replay a batch as traffic).
    Returns (accepted rows, quarantined row count)."""
    reader = SourceReader(settings)
    cleaner = Cleaner(cleaning, None, select=source_selector(settings))
    accepted, quarantined = [], 0
    for raw in reader.read(discover(sources, settings)):
        cleaned = cleaner.clean(raw)
        accepted.append(assign_sources(cleaned.accepted, settings))
        quarantined += cleaned.quarantined.num_rows
    table = pa.concat_tables(accepted) if accepted else ACCEPTED_SCHEMA.empty_table()
    return table, quarantined


def _quarantine_uri(store: Store, dataset: str, manifest: dict[str, Any]) -> str | None:
    q = manifest.get("quarantine")
    return store.url(f"{v.dataset_prefix(dataset)}/{q['path']}") if q else None
