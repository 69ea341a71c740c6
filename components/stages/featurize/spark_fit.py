"""Featurize on Spark.

The vocabulary fit is a Spark aggregation: each task counts its batches' tokens with the same
`token_counts` the in-process fit uses, Spark sums the counts by token across tasks, and only the
tokens that make the vocabulary (min_freq, most frequent first, capped) come back to the driver.
The result equals the in-process fit's vocabulary: counts add up across batches, and the order
(count descending, then token) is the same in both (UTF-8 byte order is code point order).

On a cluster (a SparkApplication, components/stages/featurize/spark_main.py) the split files are in the
store: each task takes a range of a file's Parquet row groups and reads only those by ranged
reads, both to count tokens and to encode; the encoded parts come back to the driver in order.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.shards import ROW_GROUP_ROWS, FixedRowGroupWriter
from components.common.spark import SparkSettings, session
from components.common.storage import open_store
from components.stages.featurize.config import FeaturesConfig
from components.stages.featurize.core import (
    FEATURE_SCHEMA,
    Featurizer,
    featurize_table,
    token_counts,
    vocabulary_from_counts,
)

COUNT_SCHEMA = pa.schema([("token", pa.string()), ("count", pa.int64())])
PART_SCHEMA = pa.schema([("split", pa.string()), ("part", pa.int32()), ("key", pa.string()), ("rows", pa.int64()),
                         ("ids", pa.int64())])
UNIT_DDL = "split string, part int, rg_start int, rg_stop int"


def _counts_task(config_json: dict):
    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = Featurizer(FeaturesConfig.model_validate(config_json))
        for batch in batches:
            counts = token_counts(featurizer, batch.column("text"))
            yield pa.RecordBatch.from_pydict({"token": list(counts), "count": list(counts.values())},
                                             schema=COUNT_SCHEMA)
    return count


def spark_vocabulary(train_path: str, config: FeaturesConfig, settings: SparkSettings | None = None,
                     spark=None) -> dict[str, int]:
    """The vocabulary of the train split's rows at `train_path` (a Parquet file or folder that every
    executor can read)."""
    spark = spark or session(settings, app_name="conveyor-vocabulary")
    counts = (spark.read.parquet(train_path).select("text")
              .mapInArrow(_counts_task(config.model_dump(mode="json")), "token string, count long"))
    return _vocabulary(counts, config)


def _vocabulary(counts, config: FeaturesConfig) -> dict[str, int]:
    """Summed by token in Spark; only what makes the vocabulary comes back to the driver."""
    # lazy: pyspark starts a JVM; only engine=spark needs it
    from pyspark.sql import functions as F

    summed = counts.groupBy("token").agg(F.sum("count").alias("count"))
    kept = (summed.where(F.col("count") >= config.min_freq)
            .orderBy(F.desc("count"), F.asc("token")).limit(config.num_buckets - 1).collect())
    return vocabulary_from_counts({row["token"]: row["count"] for row in kept}, config)


# -- the step on a cluster: split files in the store, read by row-group ranges -------------------

def row_group_units(store, keys: dict[str, str], parallelism: int) -> list[tuple[str, int, int, int]]:
    """(split, part, first row group, stop row group): each split file cut into about 2 x
    parallelism ranges of whole row groups (the driver reads only the footers)."""
    units = []
    for split, key in keys.items():
        with store.open_ranged(key, buffer_size=1 << 16) as handle:
            groups = pq.ParquetFile(handle).num_row_groups
        step = max(1, math.ceil(groups / (2 * parallelism)))
        units += [(split, i, a, min(groups, a + step)) for i, a in enumerate(range(0, groups, step))]
    return units


def _ranges(store, key: str, start: int, stop: int, columns: list[str], batch_rows: int):
    with store.open_ranged(key) as handle:
        pf = pq.ParquetFile(handle)
        for group in range(start, stop):
            yield from pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)


def _unit_rows(units: Iterator[pa.RecordBatch]) -> Iterator[tuple[str, int, int, int]]:
    for unit in units:
        yield from zip(*(unit.column(c).to_pylist() for c in ("split", "part", "rg_start", "rg_stop")), strict=True)


def stored_vocabulary(spark, store_uri: str, train_key: str, config: FeaturesConfig, parallelism: int,
                      batch_rows: int = ROW_GROUP_ROWS) -> dict[str, int]:
    """The vocabulary of the stored train split, each task counting its own row groups."""
    config_json = config.model_dump(mode="json")

    def count(units: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = open_store(store_uri)
        featurizer = Featurizer(FeaturesConfig.model_validate(config_json))
        for _split, _part, start, stop in _unit_rows(units):
            for batch in _ranges(store, train_key, start, stop, ["text"], batch_rows):
                counts = token_counts(featurizer, batch.column("text"))
                yield pa.RecordBatch.from_pydict({"token": list(counts), "count": list(counts.values())},
                                                 schema=COUNT_SCHEMA)

    units = row_group_units(open_store(store_uri), {"train": train_key}, parallelism)
    frame = spark.createDataFrame(units, UNIT_DDL).repartition(max(1, len(units)))
    return _vocabulary(frame.mapInArrow(count, "token string, count long"), config)


def stored_encode(spark, store_uri: str, keys: dict[str, str], featurizer: Featurizer, parts_prefix: str,
                  parallelism: int, batch_rows: int = ROW_GROUP_ROWS) -> list[dict]:
    """Every split encoded by tasks, each its range of row groups into a part file under
    `parts_prefix`; returns the parts (split, part, key, rows, ids) in order."""
    featurizer_bytes = featurizer.dumps()

    def encode(units: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = open_store(store_uri)
        encoder = Featurizer.loads(featurizer_bytes)
        for split, part, start, stop in _unit_rows(units):
            key = f"{parts_prefix}/{split}-{part:05d}.parquet"
            ids = 0
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "part.parquet")
                with FixedRowGroupWriter(local, FEATURE_SCHEMA, batch_rows) as writer:
                    for batch in _ranges(store, keys[split], start, stop, ["doc_id", "text", "label", "source"],
                                         batch_rows):
                        features = featurize_table(encoder, pa.Table.from_batches([batch]))
                        ids += int(pc.sum(pc.list_value_length(features.column("ids"))).as_py() or 0)
                        writer.write(features)
                    rows = writer.close()
                store.upload(local, key)
            yield pa.RecordBatch.from_pydict({"split": [split], "part": [part], "key": [key], "rows": [rows],
                                              "ids": [ids]}, schema=PART_SCHEMA)

    units = row_group_units(open_store(store_uri), keys, parallelism)
    frame = spark.createDataFrame(units, UNIT_DDL).repartition(max(1, len(units)))
    parts = frame.mapInArrow(encode, "split string, part int, key string, rows long, ids long").collect()
    return sorted((row.asDict() for row in parts), key=lambda p: (p["split"], p["part"]))
