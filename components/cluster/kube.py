"""The Kubernetes client, used one way by every launcher and the deploy step: configuration (in a
pod, else the kubeconfig), each call's failure as one ClusterError line, and the few custom-object
calls a launcher needs (get, create, merge patch, delete, a resumed watch on one object, list)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from components.common.errors import ClusterError, SpecError


def in_a_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))  # set in every pod


# What a command line chose (kubectl's --kubeconfig and --context), for every client made after it.
_TARGET: dict[str, str | None] = {"kubeconfig": None, "context": None}


def select(kubeconfig: str | None = None, context: str | None = None) -> None:
    """Use this kubeconfig file and context (kubectl's --kubeconfig / --context) from now on."""
    _TARGET.update(kubeconfig=kubeconfig, context=context)


def load_config(context: str | None = None) -> None:
    """In a pod, its ServiceAccount; else the kubeconfig (the selected file, else $KUBECONFIG, else
    ~/.kube/config) at the selected context, else its current one. A file or context named on the
    command line wins over the pod's own account."""
    # lazy: cluster SDK, only on the cluster path
    from kubernetes import config

    chosen = _TARGET["kubeconfig"] or context or _TARGET["context"]
    if not chosen:
        try:
            config.load_incluster_config()
            return
        except config.ConfigException:
            pass
    try:
        config.load_kube_config(config_file=_TARGET["kubeconfig"], context=context or _TARGET["context"])
    except (config.ConfigException, FileNotFoundError, TypeError) as exc:
        raise ClusterError(f"no Kubernetes configuration: {exc} (set KUBECONFIG, pass --kubeconfig, or run in a "
                           "pod)") from exc


def default_namespace() -> str:
    """The selected context's namespace (kubectl's rule), else 'default'."""
    # lazy: cluster SDK, only on the cluster path
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=_TARGET["kubeconfig"])
        if _TARGET["context"]:
            active = next((c for c in contexts if c["name"] == _TARGET["context"]), None)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: in a pod, or an error the first API call reports
        return "default"


def call_api(what: str, fn, *args, **kwargs):
    """One Kubernetes client call; its failures as a ClusterError naming the call and the status
    (with the API server's message, e.g. which RBAC permission is missing) - never a traceback."""
    # lazy: cluster SDK, only on the cluster path
    from kubernetes.client.exceptions import ApiException

    # lazy: urllib3 comes with the kubernetes client; only the cluster path needs it
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except (TypeError, ValueError):
            detail = ""
        raise api_error(what, exc.status, exc.reason, detail) from exc
    except HTTPError as exc:
        raise ClusterError(f"{what}: Kubernetes API unreachable ({exc})") from exc


def api_error(what: str, status: int, reason: str, detail: str = "") -> ClusterError:
    """The API server's refusal of `what` as one ClusterError line, its HTTP status kept in `.status`
    (404 absent, 409 changed meanwhile) for the callers that act on it."""
    error = ClusterError(f"{what}: Kubernetes API answered {status} {reason}"
                         + (" (changed meanwhile: re-run)" if status == 409 else "")
                         + (f": {detail}" if detail else ""))
    error.status = status
    return error


class CustomObjects:
    """One kind of namespaced custom object (e.g. Katib's Experiment, the Spark Operator's
    SparkApplication) through the Kubernetes API."""

    def __init__(self, kind: str, group: str, version: str, plural: str, context: str | None = None,
                 get_timeout_s: float | None = None, delete_propagation: str | None = "Foreground"):
        """`get_timeout_s`: a bound on each get (None: the client's default, none); `delete_propagation`:
        the deleteOptions' propagationPolicy (None: the API server's default for the kind)."""
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import client

        load_config(context)
        self.kind, self.group, self.version, self.plural = kind, group, version, plural
        self.get_timeout_s, self.delete_propagation = get_timeout_s, delete_propagation
        self.api = client.CustomObjectsApi()

    def _args(self, namespace: str, plural: str | None = None) -> tuple:
        return self.group, self.version, namespace, plural or self.plural

    def get(self, name, namespace):
        try:
            timeout = {} if self.get_timeout_s is None else {"_request_timeout": self.get_timeout_s}
            return call_api(f"get {self.kind} {namespace}/{name}", self.api.get_namespaced_custom_object,
                            *self._args(namespace), name, **timeout)
        except ClusterError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def create(self, manifest):
        ns = manifest["metadata"]["namespace"]
        return call_api(f"create {self.kind} {ns}/{manifest['metadata']['name']}",
                        self.api.create_namespaced_custom_object, *self._args(ns), manifest)

    def patch(self, name, namespace, patch):
        """A JSON merge patch (the client sends application/merge-patch+json for a dict body)."""
        return call_api(f"patch {self.kind} {namespace}/{name}", self.api.patch_namespaced_custom_object,
                        *self._args(namespace), name, patch)

    def delete(self, name, namespace):
        try:
            policy = {} if self.delete_propagation is None else {"propagation_policy": self.delete_propagation}
            call_api(f"delete {self.kind} {namespace}/{name}", self.api.delete_namespaced_custom_object,
                     *self._args(namespace), name, **policy)
        except ClusterError as exc:
            if getattr(exc, "status", None) != 404:
                raise

    def watch(self, name, namespace, timeout_s) -> Iterator[dict[str, Any]]:
        """The object's states until `timeout_s`, resuming when the API server ends a watch."""
        # lazy: cluster SDK, only on the cluster path
        from kubernetes import watch

        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            seconds = max(1, int(min(left, 300)))  # 0 would mean no timeout at all
            stream = watch.Watch().stream(self.api.list_namespaced_custom_object, *self._args(namespace),
                                          field_selector=f"metadata.name={name}", timeout_seconds=seconds)
            for event in stream:
                yield event["object"]

    def list(self, namespace, plural: str | None = None, label_selector: str = "") -> list[dict[str, Any]]:
        found = call_api(f"list {plural or self.plural} in {namespace}", self.api.list_namespaced_custom_object,
                         *self._args(namespace, plural), label_selector=label_selector)
        return found.get("items", [])


def adopt_or_create(api, manifest: dict[str, Any], spec_annotation: str, kind: str, log=print) -> dict | None:
    """A launcher's first step, safe to retry: the object of this (deterministic) name when it has
    the same spec hash, adopted and returned; another spec is a SpecError; none: create it, None."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    wanted = manifest["metadata"]["annotations"][spec_annotation]
    existing = api.get(name, namespace)
    if existing is None:
        api.create(manifest)
        log(f"created {kind} {namespace}/{name}")
        return None
    found = (existing.get("metadata", {}).get("annotations") or {}).get(spec_annotation)
    if found != wanted:
        raise SpecError(f"{kind} {namespace}/{name} exists with another spec ({(found or 'none')[:12]} != "
                        f"{wanted[:12]}); delete it or use a new run id")
    log(f"adopting existing {kind} {namespace}/{name}")
    return existing


def run_to_completion(api, manifest: dict[str, Any], spec_annotation: str, kind: str,
                      outcome: Callable[[dict[str, Any]], tuple[bool, str] | None], timeout_s: float,
                      log=print) -> dict[str, Any]:
    """Adopt or create the object, wait on its watch until `outcome(obj)` says it finished, and
    return it when it succeeded. `outcome`: None while running, (succeeded, message) once done.
    A failure, a timeout or a termination (SIGTERM, as KFP sends when a run is terminated) deletes
    the object, so no pod of it is left running; a failure raises ClusterError with the message."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    existing = adopt_or_create(api, manifest, spec_annotation, kind, log)
    succeeded = False

    def on_terminate(signum, _frame):
        api.delete(name, namespace)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_terminate) if threading.current_thread() is \
        threading.main_thread() else None
    try:
        final = existing if existing is not None and outcome(existing) is not None else None
        if final is None:
            for obj in api.watch(name, namespace, timeout_s):
                if outcome(obj) is not None:
                    final = obj
                    break
        if final is None:
            raise ClusterError(f"{kind} {namespace}/{name} did not finish within {timeout_s:.0f}s; deleted it")
        succeeded, message = outcome(final)
        if not succeeded:
            raise ClusterError(f"{kind} {namespace}/{name} {message}")
        return final
    finally:
        if not succeeded:
            api.delete(name, namespace)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _own_namespace() -> str:
    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
        return handle.read().strip()


def record_pod_event(reason: str, message: str, component: str, type_: str = "Warning") -> str:
    """An Event on this process's own pod (HOSTNAME, the service account's namespace). Best
    effort: returns "recorded" or why not, never raises (callers carry the message elsewhere too)."""
    # lazy: cluster SDK, only on the cluster path
    from kubernetes import client

    try:
        # KFP's launcher sets KFP_POD_NAME/KFP_POD_NAMESPACE (downward API) in every task pod
        namespace = os.environ.get("KFP_POD_NAMESPACE") or _own_namespace()
        pod = os.environ.get("KFP_POD_NAME") or os.environ["HOSTNAME"]
        load_config()
        now = dt.datetime.now(dt.UTC)
        client.CoreV1Api().create_namespaced_event(namespace, client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod}.", namespace=namespace),
            involved_object=client.V1ObjectReference(api_version="v1", kind="Pod", name=pod, namespace=namespace),
            reason=reason, message=message[:1024], type=type_, first_timestamp=now, last_timestamp=now, count=1,
            source=client.V1EventSource(component=component)))
        return "recorded"
    except Exception as exc:
        return f"not recorded: {exc}"
