"""Which engine runs an ingest, and where: the one function the CLI and the KFP step call.

- `local`: this process (`executor.ingest`: streaming, flat memory).
- `spark` off a cluster (kfp.local, the CLI): Spark `local[N]` in this process (`spark_engine`).
- `spark` in a cluster pod: a SparkApplication run by the Spark Operator (`spark_launcher`), whose
  driver runs the same `ingest_spark` against the cluster's executors.
All three give the same version for the same input and cleaning config.
"""

from __future__ import annotations

from typing import Any

from components.cluster.images import COMPONENT_IMAGE
from components.cluster.kube import in_a_pod
from components.common.config import ClusterConfig, SparkConfig, validate_section
from components.common.errors import ConfigError
from components.common.spark import check_engine
from components.common.storage import open_store
from components.stages.ingest.artifacts import IngestOutcome
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from components.stages.ingest.spark_engine import ingest_spark
from components.stages.ingest.spark_launcher import IngestJob, KubernetesSparkApplicationApi, launch, spark_application


def run_ingest(engine: str, sources: list[str], dataset: str, store_uri: str, settings: SourceSettings,
               cleaning: CleaningConfig, parent: str | None = "latest", code_version: str = "unknown",
               engine_config: dict[str, Any] | None = None, run_id: str = "", on_cluster: bool | None = None,
               api=None, workers: int | None = None, log=print) -> IngestOutcome:
    """engine_config: {"spark": data.spark, "cluster": cluster} sections (for engine=spark).
    workers: data.workers for engine=local (None or 0: the usable cores)."""
    check_engine(engine)
    store = open_store(store_uri)
    if engine == "local":
        return ingest(sources, dataset, store, settings, cleaning, parent=parent, code_version=code_version,
                      workers=workers, log=log)
    engine_config = engine_config or {}
    spark = validate_section(SparkConfig, engine_config.get("spark", {}), "data.spark")
    if on_cluster is None:
        on_cluster = in_a_pod()
    if not on_cluster:
        return ingest_spark(sources, dataset, store, settings, cleaning, parent=parent, code_version=code_version,
                            spark_settings=spark.local_settings())
    cluster = validate_section(ClusterConfig, engine_config.get("cluster", {}), "cluster")
    if not run_id:
        raise ConfigError("engine=spark on a cluster needs the run id (the SparkApplication's name comes from it)")
    job = IngestJob(list(sources), dataset, store_uri, settings.model_dump(mode="json"),
                    cleaning.model_dump(mode="json"), parent or "none", code_version)
    manifest = spark_application(run_id, job, spark, cluster, spark.image or COMPONENT_IMAGE)
    result = launch(api or KubernetesSparkApplicationApi(), store, manifest, spark.timeout_s, log=log)
    return IngestOutcome.model_validate(result)
