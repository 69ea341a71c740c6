"""Approval on a cluster (`kubectl conveyor approve|reject|pending`), where who may decide is
Kubernetes RBAC and who decided is what the API server says:

  1. identity   a SelfSubjectReview (authentication.k8s.io/v1): the user and groups the API server
                authenticated this kubeconfig as; never a flag;
  2. authority  a SelfSubjectAccessReview for the custom verb `approve` (or `reject`) on the
                environment's InferenceService: the chart's approver Role grants it;
  3. decision   a Job created from the chart's release-job template (a suspended CronJob labelled
                conveyor.dev/template=release-job, the way `kubectl create job --from=cronjob/...`
                does): it runs `conveyor release-job` in the component image with the store's
                credentials, records the decision with that identity (the refusals of
                components.stages.release.environments apply there: unknown, unblessed, not staged, already
                decided, expired), and for an approval releases into production by the configured
                strategy. No pod waits for a person: the Job starts when the person decides, and
                `kubectl get jobs` / `kubectl logs job/NAME` show it.

Pending approvals are annotations the staging step leaves on the staging InferenceService, so
`kubectl conveyor pending` needs only `list` on InferenceServices.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any, Protocol

from components.common.errors import ClusterError, InputError

TEMPLATE_LABEL = "conveyor.dev/template"
TEMPLATE = "release-job"
AWAITING = "conveyor.dev/awaiting-approval"
DECISION_ENV = ("CONVEYOR_DECISION", "CONVEYOR_DECISION_MODEL", "CONVEYOR_DECISION_VERSION", "CONVEYOR_DECISION_ENV",
                "CONVEYOR_DECISION_REASON", "CONVEYOR_APPROVER")


class ApprovalApi(Protocol):
    def whoami(self) -> dict[str, Any]:
        """status.userInfo of a SelfSubjectReview: username, groups, uid."""

    def can_i(self, verb: str, group: str, resource: str, namespace: str, name: str) -> tuple[bool, str]:
        """A SelfSubjectAccessReview: (allowed, reason)."""

    def templates(self, namespace: str) -> list[dict[str, Any]]:
        """CronJobs labelled conveyor.dev/template=release-job."""

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]: ...

    def inference_services(self, namespace: str) -> list[dict[str, Any]]: ...


def decision_job(template: dict[str, Any], verb: str, model: str, version: str, env: str, reason: str,
                 user: dict[str, Any]) -> dict[str, Any]:
    """The Job a decision runs: the template's jobTemplate, named for the decision, the decision
    and the authenticated identity in its container's environment (values, not a shell line)."""
    if not reason.strip():
        raise InputError(f"{verb} {model} {version}: --reason is required (it goes in the audit log)")
    spec = copy.deepcopy(template["spec"]["jobTemplate"])
    digest = hashlib.sha256(f"{verb}/{model}/{version}/{env}/{time.time_ns()}".encode()).hexdigest()[:6]
    name = f"{template['metadata']['name'][:40]}-{verb}-{version[:8]}-{digest}".lower()
    labels = {**(spec.get("metadata") or {}).get("labels", {}), **template["metadata"].get("labels", {}),
              "conveyor.dev/decision": verb, "conveyor.dev/model": model}
    labels.pop(TEMPLATE_LABEL, None)  # the Job is not a template
    container = spec["spec"]["template"]["spec"]["containers"][0]
    values = dict(zip(DECISION_ENV, (verb, model, version, env, reason, json.dumps(user, sort_keys=True)),
                      strict=True))
    container["env"] = [e for e in container.get("env", []) if e["name"] not in values] + [
        {"name": k, "value": v} for k, v in values.items()]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": template["metadata"]["namespace"], "labels": labels,
                         "annotations": {"conveyor.dev/decided-by": user.get("username", ""),
                                         "conveyor.dev/decision": f"{verb} {model} {version} --env {env}"},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                              "name": template["metadata"]["name"],
                                              "uid": template["metadata"].get("uid", ""), "controller": False}]},
            "spec": spec["spec"]}


def start_decision(api: ApprovalApi, verb: str, model: str, version: str, env: str, reason: str, namespace: str,
                   inference_service: str) -> dict[str, Any]:
    """whoami, may I, then the Job. Returns {job, user}; refused (ClusterError) before any write."""
    if verb not in ("approve", "reject"):
        raise InputError(verb)
    user = api.whoami()
    allowed, why = api.can_i(verb, "serving.kserve.io", "inferenceservices", namespace, inference_service)
    if not allowed:
        raise ClusterError(f"{user.get('username')} may not {verb} releases into {env}: RBAC does not allow verb "
                           f"{verb!r} on inferenceservices/{inference_service} in namespace {namespace} (the chart's "
                           f"approver Role grants it; bind it with approval.approvers)" + (f"; {why}" if why else ""))
    templates = api.templates(namespace)
    if len(templates) != 1:
        raise ClusterError(f"namespace {namespace}: expected one CronJob labelled {TEMPLATE_LABEL}={TEMPLATE} (the "
                           f"chart's release-job template), found {len(templates)}")
    job = api.create_job(namespace, decision_job(templates[0], verb, model, version, env, reason, user))
    return {"job": job["metadata"]["name"], "namespace": namespace, "user": user}


def pending_on_cluster(api: ApprovalApi, namespace: str) -> list[dict[str, Any]]:
    out = []
    for obj in api.inference_services(namespace):
        raw = (obj["metadata"].get("annotations") or {}).get(AWAITING)
        if raw:
            out.append({"inference_service": obj["metadata"]["name"], **json.loads(raw)})
    return sorted(out, key=lambda r: r.get("requested_at", ""))


class KubernetesApprovalApi:
    """The official client; each failure one ClusterError line (components.cluster.kube.call_api)."""

    def __init__(self):
        # lazy: the cluster SDK, only on the cluster path (and kube with it)
        import kubernetes.client as k8s

        from components.cluster import kube  # lazy: with the SDK

        kube.load_config()
        self.k8s, self.call = k8s, kube.call_api

    def whoami(self) -> dict[str, Any]:
        review = self.call("create SelfSubjectReview", self.k8s.AuthenticationV1Api().create_self_subject_review,
                           self.k8s.V1SelfSubjectReview(api_version="authentication.k8s.io/v1",
                                                        kind="SelfSubjectReview"))
        info = review.status.user_info
        return {"username": info.username, "groups": list(info.groups or []), "uid": info.uid or ""}

    def can_i(self, verb, group, resource, namespace, name):
        body = self.k8s.V1SelfSubjectAccessReview(
            api_version="authorization.k8s.io/v1", kind="SelfSubjectAccessReview",
            spec=self.k8s.V1SelfSubjectAccessReviewSpec(resource_attributes=self.k8s.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, namespace=namespace, name=name)))
        review = self.call("create SelfSubjectAccessReview",
                           self.k8s.AuthorizationV1Api().create_self_subject_access_review, body)
        return bool(review.status.allowed), review.status.reason or ""

    def templates(self, namespace):
        found = self.call(f"list cronjobs in {namespace}", self.k8s.BatchV1Api().list_namespaced_cron_job, namespace,
                          label_selector=f"{TEMPLATE_LABEL}={TEMPLATE}", _preload_content=False)
        return json.loads(found.data)["items"]

    def create_job(self, namespace, manifest):
        made = self.call(f"create Job {namespace}/{manifest['metadata']['name']}",
                         self.k8s.BatchV1Api().create_namespaced_job, namespace, manifest, _preload_content=False)
        return json.loads(made.data)

    def inference_services(self, namespace):
        found = self.call(f"list inferenceservices in {namespace}",
                          self.k8s.CustomObjectsApi().list_namespaced_custom_object, "serving.kserve.io", "v1beta1",
                          namespace, "inferenceservices")
        return found["items"]
