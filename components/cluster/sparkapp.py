"""A step's work as a SparkApplication (Kubeflow Spark Operator, `sparkoperator.k8s.io/v1beta2`),
launched safely and waited for: what the ingest and featurize steps share on a cluster with
`data.engine: spark`.

The same retry-safety rules as the Katib launcher (components/stages/search/katib_launcher.py):
- the name is deterministic (a step name, the run id and a hash of the job), so a retried step
  finds its own application; one with the same spec is adopted, one with another spec is refused;
- it waits on watch events and `status.applicationState.state` (no sleeps);
- on failure, timeout or termination (SIGTERM, as KFP sends when a run is terminated) the
  application is deleted, so no driver or executor is left running;
- the driver writes its result to the store, where the launcher reads it.

The job travels as one argument, base64url of its JSON (`--job-b64`, components/common/argcodec.py):
no hop between the manifest and the driver program (the operator's spark-submit, the image's
entrypoint, Spark's launcher) can change it, even one that re-reads arguments through a shell.
The manifest is built from the kubeflow-spark-api models (the operator's generated API), checked
against them strictly and against the operator's validating webhook (admission.py) before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from components.cluster.admission import validate_sparkapplication
from components.cluster.kube import CustomObjects, run_to_completion
from components.cluster.sdkvalidate import ManifestError, validate_pydantic
from components.common.argcodec import encode_object
from components.common.config import ClusterConfig, SparkConfig
from components.common.errors import SpecError
from components.common.hashing import sha256_of_value
from components.common.layout import check_run_id
from components.common.storage import Store

GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
SPEC_HASH_ANNOTATION = "conveyor.dev/spec-sha256"
# The image installs the package into /opt/conveyor (images/component.Dockerfile).
SITE_PACKAGES = "local:///opt/conveyor/lib/python3.11/site-packages"
SUCCEEDED = {"COMPLETED"}
FAILED = {"FAILED", "SUBMISSION_FAILED"}


class SparkApplicationApi(Protocol):
    def get(self, name: str, namespace: str) -> dict[str, Any] | None: ...
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, name: str, namespace: str) -> None: ...
    def watch(self, name: str, namespace: str, timeout_s: float) -> Iterator[dict[str, Any]]: ...


class KubernetesSparkApplicationApi(CustomObjects):
    """SparkApplicationApi over the Kubernetes API (in-cluster config, else the current kubeconfig)."""

    def __init__(self):
        super().__init__("SparkApplication", GROUP, VERSION, PLURAL)


def driver_file(module: str) -> str:
    """The driver program of `module` (components.x.spark_main) inside the image."""
    return f"{SITE_PACKAGES}/{module.replace('.', '/')}.py"


def application_name(step: str, run_id: str, job: dict[str, Any]) -> str:
    """conveyor-<step>-<12 hex>: the same run and job give the same name (a DNS-1035 label, as
    the operator names the driver pod and service after it)."""
    check_run_id(run_id)
    return f"conveyor-{step}-{sha256_of_value({'run': run_id, 'job': job})[:12]}"


def spark_application(step: str, run_id: str, job: dict[str, Any], module: str, result_key, spark: SparkConfig,
                      cluster: ClusterConfig, image: str) -> dict[str, Any]:
    """The SparkApplication whose driver runs `module` on `job`; `result_key(name)` is where the
    driver leaves its result. Built from the operator's API models and checked."""
    # lazy: the operator's models are needed only to build this manifest
    from kubeflow_spark_api.models import (
        IoK8sApimachineryPkgApisMetaV1ObjectMeta,
        SparkV1beta2DriverSpec,
        SparkV1beta2ExecutorSpec,
        SparkV1beta2RestartPolicy,
        SparkV1beta2SparkApplication,
        SparkV1beta2SparkApplicationSpec,
    )

    name = application_name(step, run_id, job)
    secret = [{"secretRef": {"name": cluster.s3_secret}}]  # AWS_ENDPOINT_URL / keys, for every pod
    labels = {"app.kubernetes.io/name": "conveyor", "app.kubernetes.io/component": step,
              "conveyor.dev/run-id": run_id}
    spec = SparkV1beta2SparkApplicationSpec(
        type="Python", python_version="3", mode="cluster", spark_version=spark.spark_version, image=image,
        main_application_file=driver_file(module),
        arguments=["--job-b64", encode_object(job), "--result-key", result_key(name)],
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


def launch(api: SparkApplicationApi, store: Store, manifest: dict[str, Any], result_key: str, timeout_s: float,
           log=print) -> dict[str, Any]:
    """Create (or adopt) the application, wait for it, return the result its driver wrote. No
    driver or executor survives a failure, a timeout or a terminated pipeline run."""
    run_to_completion(api, manifest, SPEC_HASH_ANNOTATION, "SparkApplication", _outcome, timeout_s, log)
    return store.read_json(result_key)
