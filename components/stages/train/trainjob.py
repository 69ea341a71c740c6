"""Distributed training on the cluster: a Kubeflow Trainer v2 TrainJob (`trainer.kubeflow.org/v1alpha1`).

The TrainJob references a torch runtime (`cluster.trainer_runtime`, a ClusterTrainingRuntime or the
chart's namespaced TrainingRuntime by `cluster.trainer_runtime_kind`; Trainer >= 2.2:
the manifest uses `runtimePatches`, which replaced `podTemplateOverrides`) and runs the shared
entrypoint under `torchrun` on `cluster.nodes` nodes x `cluster.procs_per_node` processes. The
torch plugin gives each node PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK and PET_MASTER_ADDR/PORT,
which torchrun reads as its defaults; those names are reserved, so the manifest never sets them.
Built from the `kubeflow-trainer-api` models (pinned with the runtime API they describe) and
checked against them and the Trainer webhook's rules (`components/cluster/admission.py`).

The launcher follows the Katib and SparkApplication launchers' rules (`components/cluster/kube.py`): a
deterministic name from the run id and the job, an existing TrainJob with the same spec adopted,
conditions waited on, and the TrainJob deleted on failure, timeout or termination. Rank 0 writes
the run record to the store, which the launcher returns.
"""

from __future__ import annotations

from typing import Any

from components.cluster.admission import validate_trainjob
from components.cluster.kube import CustomObjects, run_to_completion
from components.cluster.sdkvalidate import ManifestError, validate_pydantic
from components.common.config import ClusterConfig
from components.common.errors import SpecError
from components.common.hashing import sha256_of_value
from components.common.layout import check_run_id
from components.tracking.runs import read_run

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
SPEC_HASH_ANNOTATION = "conveyor.dev/spec-sha256"
# The torch runtime's JobSet: one replicated job "node" whose container is "node".
NODE = "node"
PATCH_MANAGER = "conveyor.dev/launcher"
S3_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Katib 0.19: how a TrainJob trial reports success and which pod carries its metrics.
TRIAL_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
TRIAL_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
PRIMARY_POD_LABELS = {"jobset.sigs.k8s.io/replicatedjob-name": NODE, "batch.kubernetes.io/job-completion-index": "0"}


class KubernetesTrainJobApi(CustomObjects):
    def __init__(self):
        super().__init__("TrainJob", GROUP, VERSION, PLURAL)


def torchrun_entry(entry_args: list[str]) -> list[str]:
    """The node's command: torchrun with no topology flags (PET_* from the torch plugin give them)."""
    return ["torchrun", "-m", "components.stages.train.entrypoint", *entry_args]


def train_job_spec(command: list[str], cluster: ClusterConfig, image: str) -> dict[str, Any]:
    """The TrainJob's spec (also a Katib trial's, whose metadata Katib sets)."""
    # lazy: the Trainer's models are needed only to build this manifest
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJobSpec

    limits = {"cpu": cluster.cpu, "memory": cluster.memory}
    if cluster.gpus_per_trial:
        limits[cluster.gpu_resource] = str(cluster.gpus_per_trial)
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}] + [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": cluster.s3_secret, "key": key}}} for key in S3_KEYS]
    pod = {
        "nodeSelector": cluster.node_selector or None,
        "tolerations": list(cluster.tolerations) or None,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": NODE, "securityContext": {
            "allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}}],
    }
    spec = TrainerV1alpha1TrainJobSpec.from_dict({
        "runtimeRef": {"name": cluster.trainer_runtime, "apiGroup": GROUP, "kind": cluster.trainer_runtime_kind},
        "trainer": {"image": image, "command": command, "env": env, "numNodes": cluster.nodes,
                    "numProcPerNode": cluster.procs_per_node,
                    "resourcesPerNode": {"requests": {"cpu": cluster.cpu, "memory": cluster.memory},
                                         "limits": limits}},
        "runtimePatches": [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
            "replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"},
                             "labels": {"app.kubernetes.io/part-of": "conveyor"}},
                "spec": {k: v for k, v in pod.items() if v is not None}}}}}]}}}}],
    })
    return spec.to_dict()


def train_job_name(run_id: str, spec: dict[str, Any]) -> str:
    """conveyor-train-<12 hex>: the same run and spec give the same name (a DNS-1035 label)."""
    check_run_id(run_id)
    return f"conveyor-train-{sha256_of_value({'run': run_id, 'spec': spec})[:12]}"


def train_job(run_id: str, entry_args: list[str], cluster: ClusterConfig, image: str) -> dict[str, Any]:
    """The TrainJob for one training run, checked against the Trainer's models and webhook rules."""
    spec = train_job_spec(torchrun_entry(entry_args), cluster, image)
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainJob",
                "metadata": {"name": train_job_name(run_id, spec), "namespace": cluster.namespace,
                             "labels": {"app.kubernetes.io/part-of": "conveyor", "app.kubernetes.io/component": "train",
                                        "conveyor.dev/run-id": run_id[:63]},
                             "annotations": {SPEC_HASH_ANNOTATION: sha256_of_value(spec)}},
                "spec": spec}
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a TrainJob the Trainer's API models do not describe, or its webhook would reject."""
    # lazy: as above
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    try:
        validate_pydantic(manifest, TrainerV1alpha1TrainJob)
    except ManifestError as exc:
        raise SpecError(f"TrainJob {manifest.get('metadata', {}).get('name')}: {exc}") from exc
    validate_trainjob(manifest)


def outcome(obj: dict[str, Any]) -> tuple[bool, str] | None:
    """(succeeded, message) once the TrainJob has a true Complete or Failed condition."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True, "Complete"
        if condition.get("type") == "Failed":
            name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", "")
            return False, (f"Failed: {condition.get('reason', '')} {condition.get('message', '')}".rstrip()
                           + f" (rank 0's log: kubectl logs -n {namespace} -l "
                             f"jobset.sigs.k8s.io/jobset-name={name},batch.kubernetes.io/job-completion-index=0)")
    return None


def launch(api, store, manifest: dict[str, Any], run_id: str, timeout_s: float, log=print) -> dict[str, Any]:
    """Create (or adopt) the TrainJob, wait for it, return the run record its rank 0 wrote."""
    run_to_completion(api, manifest, SPEC_HASH_ANNOTATION, "TrainJob", outcome, timeout_s, log)
    return read_run(store, run_id)
