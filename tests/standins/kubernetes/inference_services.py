"""An in-memory stand-in for the few Kubernetes API calls on InferenceServices, with a simulated
KServe controller. No API server runs on the build machines; this keeps the API server's rules
that our code depends on: JSON merge patch, generation bumped on spec changes, resourceVersion
conflicts (409), every write validated against the upstream CRD and KServe's webhook (400/422),
watch events, and KServe's status (observedGeneration, Ready, Knative revisions and traffic split).
tests/standins/kubernetes/apiserver.py is the same over HTTP, with RBAC, for the real kubernetes client."""

from __future__ import annotations

import copy
import json
import threading
import time

from components.cluster.deploy import merge_patch
from components.common.errors import ClusterError


def _admit(obj: dict, old: dict | None) -> None:
    """What the API server and KServe's validating webhook would refuse, as the status they answer."""
    from components.common.errors import SpecError
    from tests.standins.kubernetes.crd_schema import SchemaError
    from tests.standins.kubernetes.custom_resources import validate_custom

    try:
        validate_custom({k: v for k, v in obj.items() if k != "status"},
                        {k: v for k, v in old.items() if k != "status"} if old else None)
    except (SchemaError, SpecError) as exc:
        error = ClusterError(f"{obj['metadata']['name']}: {'422 Invalid' if isinstance(exc, SchemaError) else '400'}"
                             f": {exc}")
        error.status = 422 if isinstance(exc, SchemaError) else 400
        raise error from exc


def _patched(current: dict | None, patch: dict, key: tuple[str, str]) -> dict:
    """A JSON merge patch as the API server applies it: 404 for a missing object, 409 when the
    patch names a resourceVersion that is not the current one (the key is consumed), admission,
    the generation bumped on a spec change."""
    if current is None:
        raise ClusterError(f"patch {key}: 404 NotFound")
    want = patch.get("metadata", {}).pop("resourceVersion", None)
    if want is not None and want != current["metadata"]["resourceVersion"]:
        error = ClusterError(f"patch {key}: 409 Conflict")
        error.status = 409
        raise error
    obj = merge_patch(current, patch)
    _admit(obj, current)
    if obj.get("spec") != current.get("spec"):
        obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
    return obj


class StandInApi:
    def __init__(self, reconcile_delay_s: float = 0.05, controller: bool = True):
        self.objects: dict[tuple[str, str], dict] = {}
        self.events: list[dict] = []
        self.patches: list[dict] = []
        self.version = 0
        self.cond = threading.Condition()
        self.reconcile_delay_s, self.controller = reconcile_delay_s, controller
        self.revisions: dict[tuple[str, str], list[str]] = {}  # revision template keys, in creation order
        self.service_url: str | None = None  # status.url; default http://NAME.NAMESPACE.example.com
        self.service_urls: dict[str, str] = {}  # status.url of one InferenceService by name
        self.deleted: list[tuple[str, str]] = []

    # -- API --------------------------------------------------------------------------------------
    def get(self, name, namespace):
        with self.cond:
            obj = self.objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def create(self, manifest):
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        with self.cond:
            if key in self.objects:
                raise ClusterError(f"create {key}: 409 AlreadyExists")
            obj = copy.deepcopy(manifest)
            _admit(obj, None)
            obj["metadata"].update(generation=1, uid=f"uid-{key[1]}")
            self._store(key, obj)
        self._schedule(key)
        return copy.deepcopy(obj)

    def patch(self, name, namespace, patch):
        key = (namespace, name)
        with self.cond:
            patch = copy.deepcopy(patch)
            obj = _patched(self.objects.get(key), patch, key)
            self.patches.append(patch)
            self._store(key, obj)
        self._schedule(key)
        return copy.deepcopy(obj)

    def watch(self, name, namespace, timeout_s):
        deadline = time.monotonic() + timeout_s
        seen = None
        while True:
            with self.cond:
                while (obj := self.objects.get((namespace, name))) is None or \
                        obj["metadata"]["resourceVersion"] == seen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.cond.wait(left)
                seen = obj["metadata"]["resourceVersion"]
                snapshot = copy.deepcopy(obj)
            yield snapshot

    def event(self, obj, reason, message, type_="Normal"):
        self.events.append({"object": obj["metadata"]["name"], "reason": reason, "message": message, "type": type_})

    def delete(self, name, namespace):
        with self.cond:
            if self.objects.pop((namespace, name), None) is not None:
                self.deleted.append((namespace, name))
                self.version += 1
                self.cond.notify_all()

    # -- simulated controller ---------------------------------------------------------------------
    def _store(self, key, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        self.cond.notify_all()

    def _schedule(self, key):
        if self.controller:
            threading.Timer(self.reconcile_delay_s, self._reconcile, args=(key,)).start()

    def _reconcile(self, key):
        with self.cond:
            obj = copy.deepcopy(self.objects[key])
            predictor = {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
            template = json.dumps(predictor, sort_keys=True)
            revisions = self.revisions.setdefault(key, [])
            if not revisions or revisions[-1] != template:
                revisions.append(template)
            name = key[1]
            latest = f"{name}-predictor-{len(revisions):05d}"
            status = obj.setdefault("status", {})
            component = status.setdefault("components", {}).setdefault("predictor", {})
            rolled = component.get("latestRolledoutRevision")
            percent = obj["spec"]["predictor"].get("canaryTrafficPercent")
            if percent is None or rolled is None or rolled == latest:
                component["traffic"] = [{"revisionName": latest, "percent": 100, "latestRevision": True}]
                if rolled != latest:
                    component["previousRolledoutRevision"] = rolled
                component["latestRolledoutRevision"] = latest
            else:
                component["traffic"] = [
                    {"revisionName": latest, "percent": percent, "tag": "latest", "latestRevision": True},
                    {"revisionName": rolled, "percent": 100 - percent, "tag": "prev", "latestRevision": False}]
            component.update(latestCreatedRevision=latest, latestReadyRevision=latest)
            status["url"] = self.service_urls.get(name) or self.service_url or f"http://{name}.{key[0]}.example.com"
            status["observedGeneration"] = obj["metadata"]["generation"]
            conditions = [{"type": "Ready", "status": "True"}]
            if obj["spec"].get("canary"):
                conditions.append({"type": "CanaryPredictorReady", "status": "True"})
            status["conditions"] = conditions
            self._store(key, obj)


class StandInObjects:
    """One other kind of namespaced custom object (an HTTPRoute): get, create (409 when it exists),
    JSON merge patch with resourceVersion conflicts, delete; every write checked as the API server
    checks it (the upstream CRD with its CEL rules, transition rules on updates, the webhooks)."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.writes: list[tuple[str, dict]] = []  # (verb, object after the write)
        self.version = 0

    def get(self, name, namespace):
        obj = self.objects.get((namespace, name))
        return copy.deepcopy(obj) if obj else None

    def create(self, manifest):
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if key in self.objects:
            error = ClusterError(f"create {key}: 409 AlreadyExists")
            error.status = 409
            raise error
        obj = copy.deepcopy(manifest)
        _admit(obj, None)
        obj["metadata"]["generation"] = 1
        return self._store(key, obj, "create")

    def patch(self, name, namespace, patch):
        key = (namespace, name)
        return self._store(key, _patched(self.objects.get(key), copy.deepcopy(patch), key), "patch")

    def delete(self, name, namespace):
        if self.objects.pop((namespace, name), None) is not None:
            self.writes.append(("delete", {"metadata": {"name": name, "namespace": namespace}}))

    def _store(self, key, obj, verb):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        self.writes.append((verb, copy.deepcopy(obj)))
        return copy.deepcopy(obj)
