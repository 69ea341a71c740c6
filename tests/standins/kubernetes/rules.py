"""The Kubernetes API server's rules, once, for every stand-in in this package: the HTTP server
(apiserver.py, with RBAC, for the real `kubernetes` client) and the in-process object stores
(objects.py) that the launcher, deploy and release tests call directly.

- every write is checked as the API server checks it: the unmodified upstream CRD's schema with its
  CEL rules (a real CEL engine), transition rules on an update, then the ported admission webhooks;
- an update keeps the object's identity (uid, name, namespace, creation time), is refused with 409
  when it names a resourceVersion that is not the current one, and bumps metadata.generation only
  when the spec changed;
- KServe's controller model: the status an InferenceService gets once reconciled.
No API server or controller runs on these machines; see README's cluster section for what a real
cluster adds.
"""

from __future__ import annotations

import json

# The Kubernetes versions whose built-in schemas (kubernetes-validate) every manifest and every
# built-in object written to the stand-in is checked against.
KUBE_VERSIONS = ("1.30.0", "1.34.0")
IDENTITY = ("uid", "creationTimestamp", "generation", "namespace", "name")


class Refused(Exception):
    """What the API server answers instead of the write: its HTTP code, reason and message."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def admit(obj: dict, old: dict | None, runtime: dict | None = None) -> None:
    """Schema validation (strict: an unknown field is 400 BadRequest, another schema error 422
    Invalid) and then the webhooks (400 with the webhook's message). `runtime` is the
    TrainingRuntime a TrainJob references, when the store holds it."""
    from components.common.errors import SpecError
    from tests.standins.kubernetes.crd_schema import SchemaError
    from tests.standins.kubernetes.custom_resources import validate_custom

    try:
        validate_custom({k: v for k, v in obj.items() if k != "status"},
                        {k: v for k, v in old.items() if k != "status"} if old else None, runtime=runtime)
    except SchemaError as exc:
        unknown = "unknown field" in str(exc)
        raise Refused(400 if unknown else 422, "BadRequest" if unknown else "Invalid",
                      ("strict decoding error: " if unknown else "") + str(exc)) from exc
    except SpecError as exc:  # an admission webhook's denial (AdmissionError), or an SDK model's refusal
        raise Refused(400, "BadRequest", str(exc)) from exc


def replaced(current: dict, updated: dict, wanted_version: str | None, resource: str, name: str,
             check=admit) -> dict:
    """`updated` as the API server stores it in place of `current` (a PUT, or the result of a patch)."""
    if wanted_version is not None and wanted_version != current["metadata"]["resourceVersion"]:
        raise Refused(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                                       "modified; please apply your changes to the latest version and try again")
    for field in IDENTITY:
        if field in current["metadata"]:
            updated["metadata"][field] = current["metadata"][field]
    check(updated, current)
    if updated.get("spec") != current.get("spec"):
        updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
    return updated


def kserve_status(obj: dict, revisions: list[str], url: str) -> None:
    """KServe's status for both modes, written into `obj`: observedGeneration, Ready (and
    CanaryPredictorReady), the Knative revisions and the traffic split. `revisions` holds the
    predictor templates seen so far (a new template is a new revision)."""
    name = obj["metadata"]["name"]
    status = obj.setdefault("status", {})
    component = status.setdefault("components", {}).setdefault("predictor", {})
    template = json.dumps({k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"},
                          sort_keys=True)
    if not revisions or revisions[-1] != template:
        revisions.append(template)
    latest = f"{name}-predictor-{len(revisions):05d}"
    rolled = component.get("latestRolledoutRevision")
    percent = obj["spec"]["predictor"].get("canaryTrafficPercent")
    if percent is None or rolled is None or rolled == latest:
        component["traffic"] = [{"revisionName": latest, "percent": 100, "latestRevision": True}]
        if rolled != latest:
            component["previousRolledoutRevision"] = rolled
        component["latestRolledoutRevision"] = latest
    else:
        component["traffic"] = [{"revisionName": latest, "percent": percent, "tag": "latest", "latestRevision": True},
                                {"revisionName": rolled, "percent": 100 - percent, "tag": "prev",
                                 "latestRevision": False}]
    component.update(latestCreatedRevision=latest, latestReadyRevision=latest)
    status["url"] = url
    status["observedGeneration"] = obj["metadata"]["generation"]
    status["conditions"] = [{"type": "Ready", "status": "True"}] + (
        [{"type": "CanaryPredictorReady", "status": "True"}] if obj["spec"].get("canary") else [])
