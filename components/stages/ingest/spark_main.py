"""The Spark driver program of a cluster ingest: what a SparkApplication's driver runs.

    spark-submit .../components/stages/ingest/spark_main.py --job-b64 BASE64URL --result-key KEY

(the job is spark_launcher.IngestJob as base64url of its JSON, components/common/argcodec.py)

It runs `spark_engine.ingest_spark` in the session the Spark Operator's spark-submit configured
(cluster master, executors) and writes the result to KEY in the store, where the launcher reads
it. Exit codes as every entry point (components/common/entry.py).
"""

from __future__ import annotations

import json
import sys

from components.common.entry import run_main
from components.common.spark import driver
from components.common.storage import open_store
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.spark_engine import ingest_spark


def main(argv: list[str] | None = None) -> int:
    job, result_key, spark = driver(argv, __doc__.split("\n")[0], "ingest job (spark_launcher.IngestJob)", "ingest")
    store = open_store(job["store"])
    result = ingest_spark(job["sources"], job["dataset"], store, SourceSettings.model_validate(job["settings"]),
                          CleaningConfig.model_validate(job["cleaning"]),
                          parent=None if job.get("parent") == "none" else job.get("parent", "latest"), spark=spark,
                          code_version=job.get("code_version", "unknown"))
    store.write_json(result_key, result.to_json())
    print(json.dumps(result.to_json()))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_main("conveyor-spark-ingest", lambda: main(sys.argv[1:])))
