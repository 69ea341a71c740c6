"""A/B and shadow on KServe: an HTTPRoute of Conveyor's own in front of two InferenceServices.

In Standard mode with the Gateway API, KServe creates and owns the HTTPRoutes `<isvc>` and
`<isvc>-predictor` and rewrites them when they drift, so custom routing lives in a route of its
own (Gateway API v1, standard channel):

    HTTPRoute <isvc>-release   (hostnames from rollout.route.hostnames, on rollout.route's Gateway)
      rule "pin-candidate"  header <arm_header>: candidate  -> Service <isvc>-candidate-predictor
      rule "pin-stable"     header <arm_header>: stable     -> Service <isvc>-predictor
      rule "split"          everything else:
          ab / canary  weighted backendRefs: stable (1000 - w), candidate (w), w = share x 1000
          shadow       stable only, with a RequestMirror filter to the candidate (`percent`);
                       the gateway discards the mirrored answers
          idle         stable only (between releases: the hostname keeps working)

The candidate is a second InferenceService `<isvc>-candidate` (Standard mode, its own Deployment
and Service `<isvc>-candidate-predictor`) that serves under the stable's model name, so the same
request path works on both backends. A request carrying the arm header goes to that arm: that is
how sticky A/B assignment reaches the right arm on a cluster (the client, or Conveyor's labelled
replay, computes the arm with `experiment.assign_arm` from the key, the route's split and the salt
recorded on the route), and how the shadow's agreement is measured (each labelled row pinned to
both). Gateway API's standard channel has no session persistence, and matching on a hash of a
body field would need an InferenceGraph Switch (GJSON on the body, no hashing) or a router of
Conveyor's own: docs/rollout.md.

Pure functions over manifest dicts; components/stages/release/cluster.py applies them.
"""

from __future__ import annotations

import json
from typing import Any

from components.common.errors import ClusterError, SpecError

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
RELEASE_OF = "conveyor.dev/release-of"     # label on the route and the candidate InferenceService
ROUTE_STATE = "conveyor.dev/route"         # annotation: strategy, versions, salt, the split asked for
WEIGHT_SCALE = 1000                        # backendRef weights are proportional (0..1,000,000)
PIN_CANDIDATE, PIN_STABLE, SPLIT = "pin-candidate", "pin-stable", "split"


def candidate_isvc(name: str) -> str:
    return f"{name}-candidate"


def route_name(name: str) -> str:
    return f"{name}-release"


def predictor_service(isvc: str) -> str:
    """The Service KServe's Standard mode gives an InferenceService's predictor."""
    return f"{isvc}-predictor"


def check_names(name: str) -> None:
    """Every name derived from the InferenceService's must stay a DNS-1035 label (<= 63)."""
    longest = predictor_service(candidate_isvc(name))
    if len(longest) > 63:
        raise SpecError(f"deploy.name {name!r}: A/B and shadow need the Service {longest!r}, longer than 63 "
                        f"characters; use a name of at most {63 - len(longest) + len(name)}")


def _backend(isvc: str, port: int, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": predictor_service(isvc), "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def build_route(name: str, namespace: str, route_cfg, *, mode: str, share: float = 0.0, stable: str,
                candidate: str | None, salt: str = "") -> dict[str, Any]:
    """The release HTTPRoute. mode: "split" (ab, or a canary after a shadow: `share` of the
    traffic to the candidate), "mirror" (shadow), or "idle" (stable only)."""
    if mode not in ("split", "mirror", "idle"):
        raise ValueError(f"route mode {mode!r}")
    if mode != "idle" and not candidate:
        raise ValueError("a split or mirrored route needs a candidate")
    port = route_cfg.port
    stable_ref = _backend(name, port)
    rules: list[dict[str, Any]] = []
    if mode != "idle":
        header = route_cfg.arm_header
        rules += [
            {"name": PIN_CANDIDATE, "matches": [{"headers": [{"type": "Exact", "name": header, "value": "candidate"}]}],
             "backendRefs": [_backend(candidate_isvc(name), port)]},
            {"name": PIN_STABLE, "matches": [{"headers": [{"type": "Exact", "name": header, "value": "stable"}]}],
             "backendRefs": [stable_ref]},
        ]
    default: dict[str, Any] = {"name": SPLIT, "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
    if mode == "split":
        weight = round(share * WEIGHT_SCALE)
        default["backendRefs"] = [_backend(name, port, WEIGHT_SCALE - weight),
                                  _backend(candidate_isvc(name), port, weight)]
    else:
        default["backendRefs"] = [stable_ref]
    if mode == "mirror":
        default["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": predictor_service(candidate_isvc(name)),
                           "port": port},
            "percent": route_cfg.mirror_percent}}]
    rules.append(default)
    parent: dict[str, Any] = {"group": GROUP, "kind": "Gateway", "name": route_cfg.gateway,
                              "namespace": route_cfg.gateway_namespace}
    if route_cfg.section_name:
        parent["sectionName"] = route_cfg.section_name
    state = {"mode": mode, "stable": stable, "candidate": candidate if mode != "idle" else None, "salt": salt,
             "share": share if mode == "split" else 0.0}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute",
            "metadata": {"name": route_name(name), "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "conveyor", "app.kubernetes.io/managed-by": "conveyor",
                                    RELEASE_OF: name},
                         "annotations": {ROUTE_STATE: json.dumps(state, sort_keys=True, separators=(",", ":"))}},
            "spec": {"parentRefs": [parent],
                     "hostnames": [h.format(name=name, namespace=namespace) for h in route_cfg.hostnames],
                     "rules": rules}}


def route_state(route: dict[str, Any]) -> dict[str, Any]:
    raw = ((route.get("metadata") or {}).get("annotations") or {}).get(ROUTE_STATE)
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ClusterError(f"HTTPRoute {route['metadata']['name']}: annotation {ROUTE_STATE} is not JSON") from exc


def _split_rule(route: dict[str, Any]) -> dict[str, Any]:
    for rule in (route.get("spec") or {}).get("rules") or []:
        if rule.get("name") == SPLIT:
            return rule
    raise ClusterError(f"HTTPRoute {route['metadata']['name']}: no rule named {SPLIT!r} (edited by hand?)")


def declared_split(route: dict[str, Any], name: str) -> dict[str, float]:
    """What the route as it stands declares for unpinned traffic: each arm's share of the split
    rule's weights (a backendRef without a weight weighs 1, as the Gateway API defaults it), and the
    share mirrored to the candidate."""
    rule = _split_rule(route)
    weights = {"stable": 0, "candidate": 0}
    services = {predictor_service(name): "stable", predictor_service(candidate_isvc(name)): "candidate"}
    for ref in rule.get("backendRefs") or []:
        arm = services.get(ref.get("name"))
        if arm is None:
            raise ClusterError(f"HTTPRoute {route['metadata']['name']}: backend {ref.get('name')!r} is neither "
                               "predictor of the release")
        weights[arm] += ref.get("weight", 1)
    total = sum(weights.values())
    mirrored = 0.0
    for f in rule.get("filters") or []:
        if f.get("type") == "RequestMirror":
            mirror = f["requestMirror"]
            if "fraction" in mirror:
                mirrored = mirror["fraction"]["numerator"] / mirror["fraction"].get("denominator", 100)
            else:
                mirrored = mirror.get("percent", 100) / 100
    return {"stable": weights["stable"] / total if total else 0.0,
            "candidate": weights["candidate"] / total if total else 0.0, "mirrored": mirrored}


def route_patch(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes `current` say what `wanted` says (spec replaced whole, labels and
    annotations set), guarded by resourceVersion."""
    return {"metadata": {"labels": wanted["metadata"]["labels"], "annotations": wanted["metadata"]["annotations"],
                         "resourceVersion": current["metadata"].get("resourceVersion")},
            "spec": {k: None for k in current.get("spec", {}) if k not in wanted["spec"]} | wanted["spec"]}
