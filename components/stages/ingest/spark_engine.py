"""Ingest on Apache Spark: the in-process executor's per-batch functions run in Spark tasks, with
one global dedup, and the same version comes out.

1. The driver discovers the files (as in-process) and hands Spark one unit per file.
2. `mapInArrow(_read_and_validate)`: each task reads its files with `SourceReader` and checks them
   with `Cleaner(dedup=False)` (decode, MIME, normalize, lengths, labels, doc_id), emitting
   candidate rows with their dedup key and source order (file index, row index) and quarantined
   rows with their reasons.
3. Dedup in Spark: a candidate whose key the parent has is `duplicate_of_parent`; otherwise the
   first of its key in source order keeps it and later ones are `duplicate` (a window over the
   key, ordered by file and row index: deterministic, like the in-process order).
4. Counts and the content digest come from Spark aggregates (the digest's lanes are sums, so each
   task's partial state adds up). With the version id known, an existing version writes nothing.
5. Parts and the quarantine are written with pyarrow to the store by a Python data source writer
   (no Hadoop S3 connector: the store abstraction stays the only way to S3); its `commit()` on
   the driver writes the manifest last, the same commit point as in-process.

Spark's session is started here in `local[N]` for tests and the CLI, or given by the caller (a
SparkApplication's driver on the cluster, see `spark_launcher.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common.errors import StoreError
from components.common.hashing import sha256_of_file
from components.common.spark import SparkSettings, session
from components.common.storage import Store, locate, open_store
from components.dataset import versioning as v
from components.dataset.manifest import Part
from components.dataset.schema import (
    ACCEPTED_SCHEMA,
    QUARANTINE_SCHEMA,
    ContentDigest,
    content_keys,
    keys_from_doc_ids,
    without_raw,
)
from components.stages.ingest.artifacts import IngestOutcome
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.core import Cleaner, CleanStats, add_counts
from components.stages.ingest.executor import (
    PART_ROWS,
    ROW_GROUP_ROWS,
    PhaseClock,
    build_manifest,
    parquet_writer,
    version_result,
)
from components.stages.ingest.readers import SourceFile, SourceReader, discover
from components.stages.ingest.topics import assign_sources, source_selector

# One row per raw record (kind "a": accepted candidate, "q": quarantined) plus one "f" row per file
# naming its format. `key` is the uint64 dedup key viewed as int64: only compared for equality.
ROW_DDL = ("kind string, file_index int, row_index long, key long, doc_id string, text string, "
           "label string, source string, source_uri string, source_row long, reason string, "
           "detail string, raw binary, text_from string, defects string")
_ROW_SCHEMA = pa.schema([
    ("kind", pa.string()), ("file_index", pa.int32()), ("row_index", pa.int64()), ("key", pa.int64()),
    ("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("source", pa.string()),
    ("source_uri", pa.string()), ("source_row", pa.int64()), ("reason", pa.string()), ("detail", pa.string()),
    ("raw", pa.binary()), ("text_from", pa.string()), ("defects", pa.string()),
])
DATA_SOURCE = "conveyor_version"


# --- tasks ----------------------------------------------------------------------------------------

def _file_meta(sf: SourceFile) -> tuple:
    return (sf.uri, sf.key, sf.group, sf.named, sf.at_root)


def _source_file(meta: tuple) -> SourceFile:
    uri, key, group, named, at_root = meta
    store, _ = locate(uri)
    return SourceFile(store, key, uri, group, named=named, at_root=at_root)


def _read_and_validate(files: list[tuple], settings_json: dict, cleaning_json: dict, batch_rows: int):
    """mapInArrow body: units in, raw records out, each checked but not deduped.

    A unit is a whole file (rg_start -1) or a range of a Parquet file's row groups. A task reads its
    consecutive whole files through one reader, so small documents share batches as they do
    in-process. Each row's source order is (file index, its position among that file's rows)."""

    def run(units: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        settings = SourceSettings.model_validate(settings_json)
        cleaning = CleaningConfig.model_validate(cleaning_json)
        cleaner = Cleaner(cleaning, None, select=source_selector(settings), dedup=False)
        mine = sorted((f, a, b) for unit in units for f, a, b in zip(
            unit.column("file_index").to_pylist(), unit.column("rg_start").to_pylist(),
            unit.column("rg_stop").to_pylist(), strict=True))
        formats: dict[str, int] = {}
        whole = [f for f, a, _ in mine if a < 0]
        parts = [(f, a, b) for f, a, b in mine if a >= 0]
        for raw, file_index, row_index, reader in _whole_files(files, whole, settings, batch_rows):
            yield _checked(cleaner, raw, file_index, row_index, settings)
            formats = reader.formats_seen
        for f, a, b in parts:  # rows keep their numbers in the file: source_row counts from 1
            reader = SourceReader(settings, batch_rows=batch_rows)
            sf = dataclasses.replace(_source_file(files[f]), row_groups=(a, b))
            for raw in reader.read([sf]):
                row_index = raw.column("source_row").to_numpy(zero_copy_only=False) - 1
                yield _checked(cleaner, raw, np.full(raw.num_rows, f, np.int32), row_index, settings)
            if a == 0:  # a file split across units counts once
                for fmt, n in reader.formats_seen.items():
                    formats[fmt] = formats.get(fmt, 0) + n
        for fmt, count in formats.items():
            yield _format_row(fmt, count)

    return run


def _whole_files(files: list[tuple], indexes: list[int], settings: SourceSettings, batch_rows: int):
    index_of = {files[i][0]: i for i in reversed(indexes)}  # a file listed twice: its first place
    next_row: dict[str, int] = {}
    reader = SourceReader(settings, batch_rows=batch_rows)
    for raw in reader.read([_source_file(files[i]) for i in indexes]):
        uris = raw.column("source_uri").to_pylist()
        file_index = np.fromiter((index_of[u] for u in uris), np.int32, len(uris))
        row_index = np.empty(len(uris), np.int64)
        for r, uri in enumerate(uris):
            row_index[r] = next_row.get(uri, 0)
            next_row[uri] = row_index[r] + 1
        yield raw, file_index, row_index, reader


def _checked(cleaner: Cleaner, raw: pa.RecordBatch, file_index, row_index, settings) -> pa.RecordBatch:
    before = cleaner.stats.rows_accepted
    return _rows(file_index, row_index, raw, cleaner.clean(raw), before, settings)


def _units(files: list[SourceFile], settings: SourceSettings, parallelism: int) -> list[tuple[int, int, int]]:
    """(file index, first row group, stop row group) per unit; -1, -1 for a whole file. A Parquet
    file is split into row-group ranges so that one big file still gives every worker work; a task
    reads its range of a remote (S3) file by ranged reads of those row groups, not the object."""
    units = []
    for i, sf in enumerate(files):
        groups = _row_groups(sf, settings)
        if groups > 1:
            step = max(1, math.ceil(groups / (2 * parallelism)))
            units += [(i, a, min(groups, a + step)) for a in range(0, groups, step)]
        else:
            units.append((i, -1, -1))
    return units


def _row_groups(sf: SourceFile, settings: SourceSettings) -> int:
    """A Parquet file's row groups (0 for any other file, or one that cannot be read: the task
    then reads it whole and reports it, as in-process). The driver reads only the footer."""
    if settings.format not in ("auto", "parquet") or sf.key.endswith(".gz"):
        return 0
    local = sf.store.local_path(sf.key)
    try:
        with (open(local, "rb") if local is not None else sf.store.open_ranged(sf.key, buffer_size=1 << 16)) \
                as handle:
            if handle.read(4) != b"PAR1":
                return 0
            handle.seek(0)
            return pq.ParquetFile(handle).num_row_groups
    except (OSError, pa.ArrowException, StoreError):
        return 0


def _rows(file_index: np.ndarray, row_index: np.ndarray, raw: pa.RecordBatch, cleaned, accepted_before: int,
          settings: SourceSettings) -> pa.RecordBatch:
    acc = assign_sources(cleaned.accepted, settings).combine_chunks()
    quar = cleaned.quarantined.combine_chunks()
    n_a, n_q = acc.num_rows, quar.num_rows
    raw_changed = pa.nulls(n_a, pa.binary())
    changes = cleaned.raw_changes
    if changes.num_rows:  # raw bytes where they differ from the text: what a moved duplicate keeps
        values: list = [None] * n_a
        for seq, value in zip(changes.column("seq").to_pylist(), changes.column("raw").to_pylist(), strict=True):
            values[seq - accepted_before] = value
        raw_changed = pa.array(values, pa.binary())
    keys = keys_from_doc_ids(acc.column("doc_id").combine_chunks()).view(np.int64)
    accepted_at = pa.array(cleaned.accepted_rows, pa.int64())
    accepted = pa.table({
        "kind": pa.repeat(pa.scalar("a"), n_a),
        "file_index": pa.array(file_index[cleaned.accepted_rows], pa.int32()),
        "row_index": pa.array(row_index[cleaned.accepted_rows], pa.int64()),
        "key": pa.array(keys, pa.int64()),
        "doc_id": acc.column("doc_id"),
        "text": acc.column("text").cast(pa.string()),
        "label": acc.column("label"), "source": acc.column("source"),
        "source_uri": acc.column("source_uri"), "source_row": acc.column("source_row"),
        "reason": pa.nulls(n_a, pa.string()), "detail": pa.nulls(n_a, pa.string()),
        "raw": raw_changed,
        "text_from": raw.column("text_from").take(accepted_at),
        "defects": raw.column("defects").take(accepted_at),
    }, schema=_ROW_SCHEMA)
    quarantined = pa.table({
        "kind": pa.repeat(pa.scalar("q"), n_q),
        "file_index": pa.array(file_index[cleaned.quarantined_rows], pa.int32()),
        "row_index": pa.array(row_index[cleaned.quarantined_rows], pa.int64()),
        "key": pa.nulls(n_q, pa.int64()), "doc_id": pa.nulls(n_q, pa.string()), "text": pa.nulls(n_q, pa.string()),
        "label": quar.column("label"), "source": quar.column("source"),
        "source_uri": quar.column("source_uri"), "source_row": quar.column("source_row"),
        "reason": quar.column("reason"), "detail": quar.column("detail"),
        "raw": quar.column("raw").cast(pa.binary()),
        "text_from": pa.nulls(n_q, pa.string()), "defects": pa.nulls(n_q, pa.string()),
    }, schema=_ROW_SCHEMA)
    return pa.concat_tables([accepted, quarantined]).combine_chunks().to_batches(max_chunksize=1 << 62)[0] \
        if n_a + n_q else pa.RecordBatch.from_pylist([], schema=_ROW_SCHEMA)


def _format_row(fmt: str, count: int) -> pa.RecordBatch:
    """How many files of a format a task read (kind "f": not a record; label = format, row_index = count)."""
    row = {name: [None] for name in _ROW_SCHEMA.names}
    row.update(kind=["f"], label=[fmt], row_index=[count])
    return pa.RecordBatch.from_pydict(row, schema=_ROW_SCHEMA)


def _parent_keys(store_uri: str, dataset: str):
    """mapInArrow body: parent part paths in, their dedup keys out."""

    def run(parts: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = open_store(store_uri)
        with tempfile.TemporaryDirectory() as tmp:
            for batch in parts:
                for path in batch.column("path").to_pylist():
                    local = store.local_copy(f"{v.dataset_prefix(dataset)}/{path}", tmp)
                    doc_ids = pq.read_table(local, columns=["doc_id"]).column("doc_id").combine_chunks()
                    keys = keys_from_doc_ids(doc_ids).view(np.int64)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(keys, pa.int64()), pa.repeat(pa.scalar(True), len(keys))], names=["key", "in_parent"])

    return run


def _accepted_stats(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: a partition's accepted rows in; out, in one pass, its partial content digest
    and its counts by label, by email text origin and by accepted MIME defect (JSON)."""
    digest, stats = ContentDigest(), CleanStats()
    for batch in batches:
        keys = batch.column("key").to_numpy(zero_copy_only=False).view(np.uint64)
        digest.add(content_keys(keys, batch.column("label")))
        add_counts(stats.by_label, batch.column("label"))
        add_counts(stats.text_from, batch.column("text_from"))
        for defects in batch.column("defects").drop_null().to_pylist():
            for d in defects.split(","):
                stats.accepted_defects[d] = stats.accepted_defects.get(d, 0) + 1
    counts = {"by_label": stats.by_label, "text_from": stats.text_from, "defects": stats.accepted_defects}
    yield pa.RecordBatch.from_pylist([{"lanes": digest.lanes.tobytes(), "n": digest.count,
                                       "counts": json.dumps(counts)}], schema=_STATS_SCHEMA)


_STATS_SCHEMA = pa.schema([("lanes", pa.binary()), ("n", pa.int64()), ("counts", pa.string())])


# --- writing: a Python data source whose driver-side commit writes the manifest last ------------

def _data_source_classes():
    from pyspark.sql.datasource import (  # lazy: pyspark is this engine's dependency only
        DataSource,
        DataSourceArrowWriter,
        WriterCommitMessage,
    )

    @dataclass
    class Written(WriterCommitMessage):
        key: str
        rows: int
        sha256: str
        bytes: int
        partition: int

    class VersionWriter(DataSourceArrowWriter):
        """Options: store, key (a template with {partition}), role (parts | quarantine), and for
        parts the manifest JSON (everything but its own parts) that commit() completes."""

        def __init__(self, options: dict):
            self.options = dict(options)

        def write(self, iterator):
            from pyspark import TaskContext  # lazy: as above

            partition = TaskContext.get().partitionId()
            return Written(*_write_partition(self.options, iterator, partition), partition)

        def commit(self, messages):
            _commit_written(self.options, sorted((m for m in messages if m is not None and m.rows),
                                                 key=lambda m: m.partition))

        def abort(self, messages):
            store = open_store(self.options["store"])
            for m in messages:
                if m is not None and m.key:
                    store.delete(m.key)

    class VersionDataSource(DataSource):
        @classmethod
        def name(cls):
            return DATA_SOURCE

        def writer(self, schema, overwrite):
            return VersionWriter(self.options)

    return VersionDataSource


class Uploaded(NamedTuple):
    """One task's Parquet file, uploaded: its store key, rows, checksum and size."""

    key: str
    rows: int
    sha256: str
    bytes: int


def _write_partition(options: dict, iterator, partition: int) -> Uploaded:
    """A task's rows as one Parquet file uploaded to its partition's key (an empty Uploaded when the
    partition holds no row)."""
    schema = QUARANTINE_SCHEMA if options["role"] == "quarantine" else ACCEPTED_SCHEMA
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "out.parquet")
        out = None
        for batch in iterator:
            if not batch.num_rows:
                continue
            table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
            if options.get("withhold_raw") == "true":  # cleaning.quarantine_raw: false
                table = without_raw(table)
            out = out or parquet_writer(local, schema)
            out.write_table(table, row_group_size=ROW_GROUP_ROWS)
            rows += table.num_rows
        if out is None:
            return Uploaded("", 0, "", 0)
        out.close()
        key = options["key"].format(partition=partition)
        open_store(options["store"]).upload(local, key)
        return Uploaded(key, rows, sha256_of_file(local), os.path.getsize(local))


def _commit_written(options: dict, written: list) -> None:
    """The driver's commit of the non-empty files the tasks wrote, in partition order. The
    quarantine (written first) is staged beside the version as one file's entry; the parts complete
    the manifest with themselves and that entry, and publish the version (the commit point) only if
    they hold exactly the accepted rows."""
    store = open_store(options["store"])
    if options["role"] == "quarantine":
        if len(written) > 1:
            raise RuntimeError(f"the quarantine came out as {len(written)} files; expected one")
        entry = None if not written else {"rows": written[0].rows, "sha256": written[0].sha256,
                                          "bytes": written[0].bytes}
        store.write_json(options["key"].rsplit("/", 1)[0] + "/_quarantine.json", entry)
        return
    manifest = json.loads(options["manifest"])
    version_key = v.version_prefix(manifest["dataset"], manifest["version"])
    under = len(v.dataset_prefix(manifest["dataset"])) + 1
    manifest["parts"] += [Part(path=m.key[under:], rows=m.rows, sha256=m.sha256, bytes=m.bytes).entry()
                          for m in written]
    staged = store.read_json(f"{version_key}/_quarantine.json")
    if staged:
        manifest["quarantine"] = Part(path=f"{manifest['version']}/quarantine.parquet", **staged).entry()
    if sum(p["rows"] for p in manifest["parts"] if "inherited_from" not in p) != manifest["rows"]["accepted"]:
        raise RuntimeError("the written parts do not hold the accepted rows; version not committed")
    v.publish(store, manifest)  # the commit point
    store.delete(f"{version_key}/_quarantine.json")


# --- driver ---------------------------------------------------------------------------------------

def ingest_spark(sources: list[str], dataset: str, store: Store, settings: SourceSettings,
                 cleaning: CleaningConfig, parent: str | None = "latest", part_rows: int = PART_ROWS,
                 spark=None, spark_settings: SparkSettings | None = None,
                 code_version: str = "unknown") -> IngestOutcome:
    """`executor.ingest` on Spark: same arguments, same version, same result."""
    from pyspark import StorageLevel  # lazy: as above
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    clock = PhaseClock()
    new = v.NewVersion(store, dataset, parent)
    files = discover(sources, settings)
    parent_ref = new.parent
    spark_settings = spark_settings or SparkSettings()
    spark = spark or session(spark_settings)
    spark.dataSource.register(_data_source_classes())
    clock.done("prepare")

    metas = [_file_meta(sf) for sf in files]
    unit_list = _units(files, settings, spark.sparkContext.defaultParallelism)
    slices = max(1, min(len(unit_list), spark.sparkContext.defaultParallelism * 4))
    units = spark.createDataFrame(spark.sparkContext.parallelize(unit_list, slices),
                                  "file_index int, rg_start int, rg_stop int")
    rows = units.mapInArrow(_read_and_validate(metas, settings.model_dump(mode="json"),
                                               cleaning.model_dump(mode="json"), spark_settings.batch_rows),
                            ROW_DDL).persist(StorageLevel.DISK_ONLY)
    records = rows.filter("kind != 'f'")
    formats = {r["label"]: int(r["n"]) for r in
               rows.filter("kind = 'f'").groupBy("label").agg(F.sum("row_index").alias("n")).collect()}

    candidates = records.filter("kind = 'a'")
    first = Window.partitionBy("key").orderBy("file_index", "row_index")
    ranked = candidates.withColumn("rank", F.row_number().over(first))
    if cleaning.dedup_against_parent and parent_ref and parent_ref.parts:
        parts = spark.createDataFrame([(p.path,) for p in parent_ref.parts], "path string")
        parent_keys = parts.repartition(max(1, min(len(parent_ref.parts), slices))).mapInArrow(
            _parent_keys(store.uri, dataset), "key long, in_parent boolean")
        ranked = ranked.join(parent_keys, "key", "left")
    else:
        ranked = ranked.withColumn("in_parent", F.lit(None).cast("boolean"))
    verdict = F.when(F.col("in_parent"), F.lit("duplicate_of_parent")).when(F.col("rank") > 1, F.lit("duplicate"))
    decided = ranked.withColumn("verdict", verdict).persist(StorageLevel.DISK_ONLY)
    accepted = decided.filter(F.col("verdict").isNull())
    quarantine_cols = ["reason", "detail", "raw", "label", "source", "source_uri", "source_row", "file_index",
                       "row_index"]
    moved = decided.filter(F.col("verdict").isNotNull()).select(
        F.col("verdict").alias("reason"), F.concat(F.lit("doc_id "), F.col("doc_id")).alias("detail"),
        F.coalesce(F.col("raw"), F.encode(F.col("text"), "UTF-8")).alias("raw"),
        "label", "source", "source_uri", "source_row", "file_index", "row_index")
    quarantine = records.filter("kind = 'q'").select(*quarantine_cols).unionByName(moved)

    stats, digest = _count(records, accepted, quarantine, new)
    version = new.seal(digest, ACCEPTED_SCHEMA, cleaning.identity())
    clock.done("read_clean_dedup")

    try:
        if (existing := new.existing()) is not None:
            return version_result(store, dataset, stats, existing, False, clock)
        manifest = build_manifest(dataset, version, parent_ref, stats, digest, cleaning, settings, sources, formats,
                                  [], None, code_version)
        _write(spark, store, manifest, accepted, quarantine, stats.rows_accepted, part_rows, cleaning.quarantine_raw)
        clock.done("write_commit")
        manifest = v.read_manifest(store, dataset, version)
        return version_result(store, dataset, stats, manifest, True, clock)
    finally:
        decided.unpersist()
        rows.unpersist()


def _count(records, accepted, quarantine, new: v.NewVersion) -> tuple[CleanStats, ContentDigest]:
    """The version's row accounting and content digest (the parent's rows included), from the
    decided rows: what `Cleaner` counts in the in-process engine, here per Spark task then summed."""
    stats = CleanStats()
    stats.rows_read = records.count()
    stats.by_reason = {r["reason"]: int(r["count"]) for r in quarantine.groupBy("reason").count().collect()}
    digest = new.parent_digest()  # the parent's rows count in the child's digest
    for r in accepted.select("key", "label", "text_from", "defects").mapInArrow(
            _accepted_stats, "lanes binary, n long, counts string").collect():
        digest.merge(ContentDigest([int(x) for x in np.frombuffer(r["lanes"], np.uint64)], int(r["n"])))
        counts = json.loads(r["counts"])
        for counter, name in ((stats.by_label, "by_label"), (stats.text_from, "text_from"),
                              (stats.accepted_defects, "defects")):
            for key, n in counts[name].items():
                counter[key] = counter.get(key, 0) + n
    stats.rows_accepted = sum(stats.by_label.values())
    stats.rows_quarantined = sum(stats.by_reason.values())
    if stats.rows_read != stats.rows_accepted + stats.rows_quarantined:
        raise AssertionError(f"row accounting broke: read {stats.rows_read} != accepted {stats.rows_accepted} "
                             f"+ quarantined {stats.rows_quarantined}")
    return stats, digest


def _write(spark, store: Store, manifest: dict, accepted, quarantine, rows_accepted: int, part_rows: int,
           quarantine_raw: bool) -> None:
    """The quarantine (one file, in input order), then the parts, whose writer's commit publishes
    the version (VersionWriter.commit)."""
    prefix = v.version_prefix(manifest["dataset"], manifest["version"])
    (quarantine.repartition(1).sortWithinPartitions("file_index", "row_index").drop("file_index", "row_index")
     .write.format(DATA_SOURCE).mode("append")
     .option("store", store.uri).option("role", "quarantine").option("key", f"{prefix}/quarantine.parquet")
     .option("withhold_raw", "false" if quarantine_raw else "true")
     .save())
    # At least one part per worker so that writing is parallel too (parts may hold < part_rows).
    n_parts = max(1, math.ceil(rows_accepted / part_rows),
                  min(spark.sparkContext.defaultParallelism, rows_accepted // 10_000))
    (accepted.repartitionByRange(n_parts, "file_index", "row_index")
     .sortWithinPartitions("file_index", "row_index").select(*ACCEPTED_SCHEMA.names)
     .write.format(DATA_SOURCE).mode("append")
     .option("store", store.uri).option("role", "parts").option("key", prefix + "/part-{partition:05d}.parquet")
     .option("manifest", json.dumps(manifest)).save())
