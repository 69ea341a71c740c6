"""One way to get a SparkSession: `local[N]` in this process, or whatever master the environment
names (a SparkApplication's driver). Used by the Spark ingest engine and the vocabulary fit."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from components.common.errors import ConfigError

ENGINES = ("local", "spark")  # data.engine: who runs ingest (and the vocabulary fit)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"data.engine: {engine!r} is not one of {list(ENGINES)}")


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    shuffle_partitions: int = 8
    batch_rows: int = 65_536


def session(settings: SparkSettings | None = None, app_name: str = "conveyor-ingest"):
    """A SparkSession for this process (local mode unless the caller's environment says otherwise)."""
    from pyspark.sql import SparkSession  # lazy: pyspark starts a JVM; only this engine needs it

    settings = settings or SparkSettings()
    # Executors must run this interpreter (it has pyarrow and the components), not the PATH's python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (SparkSession.builder.appName(app_name)
               .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
               # AQE would merge shuffle partitions by size: keep the plan the same for any input.
               .config("spark.sql.adaptive.coalescePartitions.enabled", "false")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.batch_rows)))
    if "SPARK_MASTER" not in os.environ and not os.environ.get("SPARK_APPLICATION_ID"):
        builder = builder.master(settings.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
