"""One way to get a SparkSession: `local[N]` in this process, or whatever master the environment
names (a SparkApplication's driver). Used by the Spark ingest engine and the vocabulary fit."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from components.common.argcodec import decode_object
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


def driver(argv: list[str] | None, description: str, what: str, step: str):
    """What a SparkApplication's driver program starts with: its two arguments (the job as base64url
    JSON, components/common/argcodec.py, and the store key for its result) and the session the
    operator's spark-submit configured. Returns (job, result_key, spark)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--job-b64", required=True, help=f"the {what} as base64url JSON")
    parser.add_argument("--result-key", required=True, help="store key for the result JSON")
    args = parser.parse_args(argv)
    job = decode_object(args.job_b64, "--job-b64")
    spark = session(SparkSettings(shuffle_partitions=int(job.get("shuffle_partitions", 64))),
                    app_name=f"conveyor-{step}-{job['dataset']}")
    return job, args.result_key, spark
