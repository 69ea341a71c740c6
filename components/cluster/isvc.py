"""InferenceService manifests for both KServe deployment modes, checked against the SDK models.

Knative mode (`canaryTrafficPercent`): the predictor names the candidate; KServe splits traffic
between the new revision and the last rolled-out one. Promote = drop the field; roll back = 0, then
point the predictor back at the stable version.
Standard mode (KServe >= 0.20, `spec.canary[]`): the predictor stays the stable version and the
canary entry carries the candidate and its traffic share. Promote = predictor := canary, drop the
entry; roll back = drop the entry.
"""

from __future__ import annotations

from typing import Any

from components.cluster import kserve_sdk
from components.cluster.admission import validate_inference_service as kserve_webhook
from components.cluster.deploy_config import DeployConfig
from components.cluster.sdkvalidate import ManifestError, model_lookup, validate
from components.common.errors import SpecError

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# KServe's default name for the model server container; the CRD requires `model.name` under
# spec.canary[].predictor (the `make manifests` patch that relaxes it reaches spec.predictor only).
MODEL_CONTAINER = "kserve-container"


def predictor_name(version: str) -> str:
    """Standard mode names each predictor (KServe's webhook requires a unique name on every canary
    and a new name only together with a new model): the name follows the version it serves."""
    return f"v-{version}".lower()[:63]


def model_uri(store: str, model_name: str, version: str) -> str:
    return f"{store.rstrip('/')}/models/{model_name}/{version}"


def storage_uri(current: str, model_name: str | None, version: str) -> str:
    """The same registry location as `current`, for another version of the model."""
    prefix, _, _ = current.rstrip("/").rpartition("/")  # drop the version
    if model_name and not prefix.endswith(f"/models/{model_name}"):
        raise SpecError(f"storageUri {current} is not in the registry layout <store>/models/{model_name}/<version>")
    return f"{prefix}/{version}"


def _predictor(cfg: DeployConfig, model_name: str, version: str, canary_percent: int | None) -> dict[str, Any]:
    limits = {"cpu": cfg.cpu, "memory": cfg.memory}
    if cfg.gpus:
        limits["nvidia.com/gpu"] = str(cfg.gpus)
    predictor: dict[str, Any] = {
        "serviceAccountName": cfg.service_account,
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "model": {
            "modelFormat": {"name": cfg.model_format},
            "runtime": cfg.runtime,
            "protocolVersion": "v2",
            "storageUri": model_uri(cfg.store, model_name, version),
            "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory}, "limits": limits},
        },
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return predictor


def _standard_predictor(cfg: DeployConfig, model_name: str, version: str) -> dict[str, Any]:
    predictor = _predictor(cfg, model_name, version, None)
    predictor["name"] = predictor_name(version)
    predictor["model"]["name"] = MODEL_CONTAINER
    return predictor


def build_inference_service(cfg: DeployConfig, model_name: str, stable: str, candidate: str | None = None,
                            canary_percent: int = 10, env: str = "production") -> dict[str, Any]:
    """`env`: the environment it serves (config `environments`); every one but production labels
    the predictor's metrics with it (CONVEYOR_ENV) and the object with conveyor.dev/env."""
    if candidate is not None and not 0 <= canary_percent <= 100:
        raise SpecError(f"canary traffic percent {canary_percent} is outside 0..100")
    annotations = {MODE_ANNOTATION: "Knative" if cfg.mode == "knative" else "Standard",
                   "serving.kserve.io/enable-prometheus-scraping": "true",
                   "conveyor.dev/stable-version": stable}
    if cfg.mode == "knative":
        annotations["serving.kserve.io/enable-tag-routing"] = "true"  # latest-/prev- URLs per revision
        spec = {"predictor": _predictor(cfg, model_name, candidate or stable,
                                        canary_percent if candidate else None)}
    else:
        spec = {"predictor": _standard_predictor(cfg, model_name, stable)}
        if candidate:
            if cfg.standard_canary_replicas > max(cfg.min_replicas, 1):
                raise SpecError(f"deploy.standard_canary_replicas ({cfg.standard_canary_replicas}) must not exceed the "
                                f"stable predictor's minReplicas ({cfg.min_replicas}; KServe refuses it)")
            canary = _standard_predictor(cfg, model_name, candidate)
            # A canary runs fixed replicas: KServe's webhook forbids maxReplicas on it.
            del canary["maxReplicas"]
            canary["minReplicas"] = cfg.standard_canary_replicas
            spec["canary"] = [{"predictor": canary, "trafficPercent": canary_percent}]
    if candidate:
        annotations["conveyor.dev/candidate-version"] = candidate
    labels = {"app.kubernetes.io/part-of": "conveyor", "conveyor.dev/model": model_name}
    if env != "production":
        labels["conveyor.dev/env"] = env
        spec["predictor"]["model"]["env"] = [{"name": "CONVEYOR_ENV", "value": env}]
    manifest = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace, "annotations": annotations,
                             "labels": labels},
                "spec": spec}
    validate_inference_service(manifest)
    return manifest


def validate_inference_service(manifest: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Every field must exist in the kserve SDK models (pod fields in the Kubernetes models), and
    KServe's validating webhook must accept it (an update also against the `old` object)."""
    # lazy: cluster SDK, only on the cluster path
    import kubernetes.client as k8s


    kserve = kserve_sdk.load()

    try:
        validate(manifest, "V1beta1InferenceService", model_lookup(kserve, k8s))
    except ManifestError as exc:
        raise SpecError(f"InferenceService: {exc}") from exc

    kserve_webhook(manifest, old)
