"""Cluster ingest with engine=spark: launch a SparkApplication safely and wait for its result.

The same retry-safety rules as the Katib launcher (components/search/katib_launcher.py):
- the name is deterministic (run id + a hash of the job), so a retried step finds its own
  application; one with the same spec is adopted, one with another spec is refused;
- it waits on watch events and `status.applicationState.state` (no sleeps);
- on failure, timeout or termination (SIGTERM, as KFP sends when a run is terminated) the
  application is deleted, so no driver or executor is left running;
- the driver (components/ingest/spark_main.py) writes its IngestResult to the store, where the
  launcher reads it: the version is committed by the driver's data source writer, not here.

The manifest is built from the kubeflow-spark-api models (the operator's generated API) and
checked against them strictly before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from components.common.admission import validate_sparkapplication
from components.common.config import ClusterConfig, SparkConfig
from components.common.errors import SpecError
from components.common.hashing import sha256_of_value
from components.common.layout import check_run_id, ingest_job_result_key
from components.common.sdkvalidate import ManifestError, validate_pydantic
from components.common.storage import Store
from components.kube import CustomObjects, run_to_completion

GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
SPEC_HASH_ANNOTATION = "conveyor.dev/spec-sha256"
# The image installs the package into /opt/conveyor (images/component.Dockerfile).
DRIVER_FILE = "local:///opt/conveyor/lib/python3.11/site-packages/components/ingest/spark_main.py"
SUCCEEDED = {"COMPLETED"}
FAILED = {"FAILED", "SUBMISSION_FAILED"}


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


class SparkApplicationApi(Protocol):
    def get(self, name: str, namespace: str) -> dict[str, Any] | None: ...
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, name: str, namespace: str) -> None: ...
    def watch(self, name: str, namespace: str, timeout_s: float) -> Iterator[dict[str, Any]]: ...


class KubernetesSparkApplicationApi(CustomObjects):
    """SparkApplicationApi over the Kubernetes API (in-cluster config, else the current kubeconfig)."""

    def __init__(self):
        super().__init__("SparkApplication", GROUP, VERSION, PLURAL)


def application_name(run_id: str, job: IngestJob) -> str:
    """conveyor-ingest-<12 hex>: the same run and job give the same name (a DNS-1123 label, as
    the operator names the driver pod and service after it)."""
    check_run_id(run_id)
    return f"conveyor-ingest-{sha256_of_value({'run': run_id, 'job': job.to_json()})[:12]}"


def spark_application(run_id: str, job: IngestJob, spark: SparkConfig, cluster: ClusterConfig,
                      image: str) -> dict[str, Any]:
    """The SparkApplication for `job`, from the operator's API models, checked against them."""
    # lazy: the operator's models are needed only to build this manifest
    from kubeflow_spark_api.models import (
        IoK8sApimachineryPkgApisMetaV1ObjectMeta,
        SparkV1beta2DriverSpec,
        SparkV1beta2ExecutorSpec,
        SparkV1beta2RestartPolicy,
        SparkV1beta2SparkApplication,
        SparkV1beta2SparkApplicationSpec,
    )

    name = application_name(run_id, job)
    job = IngestJob(**{**job.to_json(), "shuffle_partitions": spark.shuffle_partitions})
    secret = [{"secretRef": {"name": cluster.s3_secret}}]  # AWS_ENDPOINT_URL / keys, for every pod
    labels = {"app.kubernetes.io/name": "conveyor", "app.kubernetes.io/component": "ingest",
              "conveyor.dev/run-id": run_id}
    spec = SparkV1beta2SparkApplicationSpec(
        type="Python", python_version="3", mode="cluster", spark_version=spark.spark_version, image=image,
        main_application_file=DRIVER_FILE,
        arguments=["--job", _json(job.to_json()), "--result-key", ingest_job_result_key(name)],
        spark_conf={"spark.sql.adaptive.coalescePartitions.enabled": "false",
                    "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
                    "spark.pyspark.python": "/opt/conveyor/bin/python",
                    "spark.pyspark.driver.python": "/opt/conveyor/bin/python"},
        # A retry is the launcher's decision (adopt or recreate), not the operator's.
        restart_policy=SparkV1beta2RestartPolicy(type="Never"),
        time_to_live_seconds=spark.ttl_s,
        driver=SparkV1beta2DriverSpec.from_dict({
            "cores": spark.driver_cores, "memory": spark.driver_memory, "serviceAccount": spark.service_account,
            "labels": labels, "envFrom": secret}),
        executor=SparkV1beta2ExecutorSpec.from_dict({
            "instances": spark.executors, "cores": spark.executor_cores, "memory": spark.executor_memory,
            "labels": labels, "envFrom": secret}),
    )
    app = SparkV1beta2SparkApplication(
        api_version=f"{GROUP}/{VERSION}", kind="SparkApplication",
        metadata=IoK8sApimachineryPkgApisMetaV1ObjectMeta(name=name, namespace=cluster.namespace, labels=labels),
        spec=spec)
    manifest = app.to_dict()
    manifest["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: sha256_of_value(manifest["spec"])}
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a SparkApplication the operator's API models do not describe (unknown field, wrong
    type, missing required field), naming the field, or its validating webhook would deny."""
    # lazy: as above
    from kubeflow_spark_api.models import SparkV1beta2SparkApplication

    try:
        validate_pydantic(manifest, SparkV1beta2SparkApplication)
    except ManifestError as exc:
        raise SpecError(f"SparkApplication {manifest.get('metadata', {}).get('name')}: {exc}") from exc
    validate_sparkapplication(manifest)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def state_of(obj: dict[str, Any] | None) -> tuple[str, str]:
    state = ((obj or {}).get("status") or {}).get("applicationState") or {}
    return state.get("state", ""), state.get("errorMessage", "")


def _outcome(obj: dict[str, Any]) -> tuple[bool, str] | None:
    state, message = state_of(obj)
    if state in SUCCEEDED:
        return True, state
    if state in FAILED:
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", "")
        return False, (f"{state}: {message or 'no message'} "
                       f"(driver log: kubectl logs -n {namespace} {name}-driver)")
    return None


def launch(api: SparkApplicationApi, store: Store, manifest: dict[str, Any], timeout_s: float,
           log=print) -> dict[str, Any]:
    """Create (or adopt) the application, wait for it, return the driver's IngestResult JSON. No
    driver or executor survives a failure, a timeout or a terminated pipeline run."""
    name = manifest["metadata"]["name"]
    run_to_completion(api, manifest, SPEC_HASH_ANNOTATION, "SparkApplication", _outcome, timeout_s, log)
    return store.read_json(ingest_job_result_key(name))
