"""The vocabulary fit as a Spark aggregation: each task counts its batches' tokens with the same
`token_counts` the in-process fit uses, Spark sums the counts by token across tasks, and only the
tokens that make the vocabulary (min_freq, most frequent first, capped) come back to the driver.
The result equals the in-process fit's vocabulary: counts add up across batches, and the order
(count descending, then token) is the same in both (UTF-8 byte order is code point order)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from components.common.spark import SparkSettings, session
from components.featurize.config import FeaturesConfig
from components.featurize.core import Featurizer, token_counts, vocabulary_from_counts

COUNT_SCHEMA = pa.schema([("token", pa.string()), ("count", pa.int64())])


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
    # lazy: pyspark starts a JVM; only engine=spark needs it
    from pyspark.sql import functions as F

    spark = spark or session(settings, app_name="conveyor-vocabulary")
    summed = (spark.read.parquet(train_path).select("text")
              .mapInArrow(_counts_task(config.model_dump(mode="json")), "token string, count long")
              .groupBy("token").agg(F.sum("count").alias("count")))
    kept = (summed.where(F.col("count") >= config.min_freq)
            .orderBy(F.desc("count"), F.asc("token")).limit(config.num_buckets - 1).collect())
    return vocabulary_from_counts({row["token"]: row["count"] for row in kept}, config)
