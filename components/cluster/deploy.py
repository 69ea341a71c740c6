"""Deploy to a cluster: create or patch an InferenceService through the Kubernetes API and wait
until KServe has reconciled it (status.observedGeneration caught up and Ready=True).

Waiting is event-driven (a watch on the one object), bounded by a timeout - no fixed sleeps. The
API is behind a small protocol so the same logic runs against the real API server or, in tests,
against an in-memory stand-in (no API server runs on the build machines).
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any, Protocol

from components.cluster.isvc import validate_inference_service
from components.cluster.kube import CustomObjects, call_api
from components.common.errors import ClusterError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class InferenceServiceApi(Protocol):
    def get(self, name: str, namespace: str) -> dict[str, Any] | None: ...
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def patch(self, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]: ...  # JSON merge patch
    def watch(self, name: str, namespace: str, timeout_s: float) -> Iterator[dict[str, Any]]: ...
    def event(self, obj: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None: ...
    def delete(self, name: str, namespace: str) -> None: ...  # absent already: no error


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server does with application/merge-patch+json)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def checked_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Refuse a patch whose result would not be a valid InferenceService (kserve SDK models),
    before it is sent: the API server would otherwise accept unknown fields and drop them."""
    result = merge_patch({k: v for k, v in current.items() if k != "status"}, patch)
    validate_inference_service(result)
    return result


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_reconciled(obj: dict[str, Any]) -> tuple[bool, str]:
    """True once KServe has seen this generation and reports it Ready (and the canary, if any)."""
    generation = obj.get("metadata", {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return False, f"observedGeneration {observed} < generation {generation}"
    needed = ["Ready"] + (["CanaryPredictorReady"] if obj.get("spec", {}).get("canary") else [])
    for kind in needed:
        cond = condition(obj, kind)
        if cond is None or cond.get("status") != "True":
            detail = f"{cond.get('reason', '')} {cond.get('message', '')}".strip() if cond else "no condition yet"
            return False, f"{kind} is not True ({detail})"
    return True, "ready"


def wait_reconciled(api: InferenceServiceApi, name: str, namespace: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = "no status seen"
    current = api.get(name, namespace)
    if current is not None:
        ready, last = is_reconciled(current)
        if ready:
            return current
    while (left := deadline - time.monotonic()) > 0:
        for obj in api.watch(name, namespace, left):
            ready, last = is_reconciled(obj)
            if ready:
                return obj
            if time.monotonic() >= deadline:
                break
    raise ClusterError(f"InferenceService {namespace}/{name} not ready after {timeout_s:.0f}s: {last}")


def apply_inference_service(api: InferenceServiceApi, manifest: dict[str, Any], timeout_s: float = 600,
                            log=print) -> dict[str, Any]:
    """Create, or patch spec/labels/annotations of, the InferenceService; then wait for it."""
    validate_inference_service(manifest)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    current = api.get(name, namespace)
    if current is None:
        api.create(manifest)
        log(f"created InferenceService {namespace}/{name}")
    else:
        patch = {"metadata": {"labels": manifest["metadata"].get("labels", {}),
                              "annotations": manifest["metadata"].get("annotations", {})},
                 # spec is replaced as a whole: fields we no longer set (an old canary) must go
                 "spec": {k: None for k in current.get("spec", {}) if k not in manifest["spec"]} | manifest["spec"]}
        checked_patch(current, patch)
        api.patch(name, namespace, patch)
        log(f"patched InferenceService {namespace}/{name}")
    return wait_reconciled(api, name, namespace, timeout_s)


class KubernetesInferenceServiceApi:
    """InferenceServiceApi over the Kubernetes API (in-cluster config, else the current kubeconfig):
    get, create, patch and delete are kube.CustomObjects' (one 404 rule for the project); the watch
    and the Events are this kind's own."""

    def __init__(self, context: str | None = None):
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import client

        # each get bounded; a delete takes the API server's default propagation, as it always did here
        self.objects = CustomObjects("InferenceService", GROUP, VERSION, PLURAL, context=context, get_timeout_s=30,
                                     delete_propagation=None)
        self.custom = self.objects.api
        self.core = client.CoreV1Api()

    def _call(self, what: str, fn, *args, **kwargs):
        return call_api(what, fn, *args, **kwargs)

    def get(self, name, namespace):
        return self.objects.get(name, namespace)

    def create(self, manifest):
        return self.objects.create(manifest)

    def patch(self, name, namespace, patch):
        return self.objects.patch(name, namespace, patch)

    def delete(self, name, namespace):
        self.objects.delete(name, namespace)

    def watch(self, name, namespace, timeout_s):
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import watch

        stream = watch.Watch().stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                      field_selector=f"metadata.name={name}", timeout_seconds=max(1, int(timeout_s)))
        for event in stream:
            if event["type"] in ("ADDED", "MODIFIED"):
                yield event["object"]

    def event(self, obj, reason, message, type_="Normal"):
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import client

        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(api_version=obj["apiVersion"], kind=obj["kind"],
                                                     name=meta["name"], namespace=meta["namespace"],
                                                     uid=meta.get("uid")),
            reason=reason, message=message[:1024], type=type_, first_timestamp=now, last_timestamp=now, count=1,
            source=client.V1EventSource(component="conveyor-canary"))
        self._call(f"create Event for {meta['namespace']}/{meta['name']}", self.core.create_namespaced_event,
                   meta["namespace"], body)
