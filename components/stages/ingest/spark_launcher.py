"""Cluster ingest with engine=spark: the ingest job as a SparkApplication (components/cluster/sparkapp.py:
deterministic name, adopt or refuse, wait, delete on failure, timeout or termination).

The driver (components/stages/ingest/spark_main.py) commits the version through its data source writer
and writes its IngestOutcome to the store, where the launcher reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from components.cluster import sparkapp
from components.cluster.sparkapp import SPEC_HASH_ANNOTATION, KubernetesSparkApplicationApi, check_manifest
from components.common.config import ClusterConfig, SparkConfig
from components.common.layout import ingest_job_result_key
from components.common.storage import Store

__all__ = [
    "DRIVER_MODULE",
    "SPEC_HASH_ANNOTATION",
    "IngestJob",
    "KubernetesSparkApplicationApi",
    "application_name",
    "check_manifest",
    "launch",
    "spark_application",
]
DRIVER_MODULE = "components.stages.ingest.spark_main"


@dataclass(frozen=True)
class IngestJob:
    """What the driver ingests: the arguments of `executor.ingest`, as JSON-able values."""
    sources: list[str]
    dataset: str
    store: str
    settings: dict
    cleaning: dict
    parent: str = "latest"
    code_version: str = "unknown"
    shuffle_partitions: int = 64

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def application_name(run_id: str, job: IngestJob) -> str:
    """conveyor-ingest-<12 hex>: the same run and job give the same name."""
    return sparkapp.application_name("ingest", run_id, job.to_json())


def spark_application(run_id: str, job: IngestJob, spark: SparkConfig, cluster: ClusterConfig,
                      image: str) -> dict[str, Any]:
    """The SparkApplication for `job`, from the operator's API models, checked."""
    job = IngestJob(**{**job.to_json(), "shuffle_partitions": spark.shuffle_partitions})
    return sparkapp.spark_application("ingest", run_id, job.to_json(), DRIVER_MODULE, ingest_job_result_key, spark,
                                      cluster, image)


def launch(api, store: Store, manifest: dict[str, Any], timeout_s: float, log=print) -> dict[str, Any]:
    """Create (or adopt) the application, wait for it, return the driver's IngestOutcome JSON."""
    return sparkapp.launch(api, store, manifest, ingest_job_result_key(manifest["metadata"]["name"]), timeout_s, log)
