"""The Spark driver program of a cluster featurize step: what a SparkApplication's driver runs.

    spark-submit .../components/stages/featurize/spark_main.py --job-b64 BASE64URL --result-key KEY

The job (components/stages/featurize/engines.py: FeaturizeJob, base64url of its JSON) names the store,
the dataset version, the split and feature settings and the staged split files. The driver runs
`executor.featurize_stored` in the session the Spark Operator's spark-submit configured (cluster
master, executors): labels, the vocabulary as a Spark aggregation, the encoding as Spark tasks
over row-group ranges; it publishes the feature cache entry and writes the step's result to KEY,
where the launcher reads it. Exit codes as every entry point (components/common/entry.py).
"""

from __future__ import annotations

import json
import posixpath
import sys

from components.common.entry import run_main
from components.common.spark import driver
from components.common.storage import open_store
from components.stages.featurize.executor import featurize_stored


def main(argv: list[str] | None = None) -> int:
    job, result_key, spark = driver(argv, __doc__.split("\n")[0], "featurize job", "featurize")
    result = featurize_stored(job, spark, parts_prefix=posixpath.join(posixpath.dirname(result_key), "parts"))
    open_store(job["store"]).write_json(result_key, result)
    print(json.dumps({k: v for k, v in result.items() if k != "stats"}))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_main("conveyor-spark-featurize", lambda: main(sys.argv[1:])))
