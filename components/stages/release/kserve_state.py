"""The rollout's state as it lives on a KServe InferenceService (annotations), and the patches that
move traffic in both KServe modes: what the release step's controller, the people's verbs
(cluster_verbs.py) and the status output (cluster_status.py) share.

  annotation conveyor.dev/canary          phase, weight, failed checks, last intervals, verbs (JSON)
  annotation conveyor.dev/canary-config   the CanaryConfig the rollout started with (JSON)
  annotation conveyor.dev/rollout-config  the RolloutConfig (strategy) it started with (JSON)
"""

from __future__ import annotations

import copy
import json
from typing import Any

from components.cluster.isvc import MODE_ANNOTATION, storage_uri
from components.common.errors import ClusterError, ConfigError
from components.stages.release.analysis import CanaryState
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.release.rollout import now
from components.stages.release.strategies import Plan

STATE = "conveyor.dev/canary"
CONFIG = "conveyor.dev/canary-config"
ROLLOUT = "conveyor.dev/rollout-config"  # the RolloutConfig (strategy) the rollout started with
ROUTE = "conveyor.dev/release-route"     # the HTTPRoute an A/B or shadow release runs on
# Strategies that run on a route of Conveyor's own, with the candidate in its own InferenceService.
ROUTED_STRATEGIES = ("ab", "shadow")
STABLE = "conveyor.dev/stable-version"
CANDIDATE = "conveyor.dev/candidate-version"
MODEL_LABEL = "conveyor.dev/model"
HISTORY_KEPT = 5  # intervals kept in the annotation; the full history is in the Events


def mode_of(obj: dict[str, Any]) -> str:
    return "standard" if obj["metadata"].get("annotations", {}).get(MODE_ANNOTATION) == "Standard" else "knative"


def read_state(obj: dict[str, Any]) -> CanaryState | None:
    raw = obj["metadata"].get("annotations", {}).get(STATE)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        missing = {"weight", "step", "failed", "successes", "phase", "history"} - set(data)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        return CanaryState.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        name = obj["metadata"]["name"]
        raise ClusterError(f"InferenceService {name}: annotation {STATE} is not a canary state ({exc})") from exc


def read_config(obj: dict[str, Any]) -> CanaryConfig:
    raw = obj["metadata"].get("annotations", {}).get(CONFIG)
    try:
        return CanaryConfig.model_validate_json(raw) if raw else CanaryConfig()
    except ValueError as exc:
        raise ConfigError(f"annotation {CONFIG}: {exc}") from exc


def read_plan(obj: dict[str, Any], cfg: CanaryConfig | None = None) -> Plan:
    raw = obj["metadata"].get("annotations", {}).get(ROLLOUT)
    try:
        rollout = RolloutConfig.model_validate_json(raw) if raw else RolloutConfig()
    except ValueError as exc:
        raise ConfigError(f"annotation {ROLLOUT}: {exc}") from exc
    return Plan(cfg or read_config(obj), rollout)



def state_annotation(state: CanaryState) -> str:
    data = state.to_json()
    data["history"] = data["history"][-HISTORY_KEPT:]
    data["updated"] = now()
    return json.dumps(data, separators=(",", ":"))


def weight_patch(obj: dict[str, Any], weight: int) -> dict[str, Any]:
    if mode_of(obj) == "knative":
        return {"spec": {"predictor": {"canaryTrafficPercent": weight}}}
    canary = copy.deepcopy(obj["spec"].get("canary") or [])
    if not canary:
        raise ClusterError(f"InferenceService {obj['metadata']['name']}: no spec.canary entry to set a weight on")
    canary[0]["trafficPercent"] = weight
    return {"spec": {"canary": canary}}


def promote_patches(obj: dict[str, Any]) -> list[dict[str, Any]]:
    ann = obj["metadata"].get("annotations", {})
    done = {"metadata": {"annotations": {STABLE: ann.get(CANDIDATE, ann.get(STABLE)), CANDIDATE: None}}}
    if mode_of(obj) == "knative":
        return [{"spec": {"predictor": {"canaryTrafficPercent": None}}} | done]
    canary = (obj["spec"].get("canary") or [{}])[0].get("predictor")
    if not canary:
        raise ClusterError(f"InferenceService {obj['metadata']['name']}: no canary to promote")
    predictor = copy.deepcopy(obj["spec"]["predictor"])
    # Keep the stable's replica settings; take the canary's model and its name (KServe's webhook
    # accepts a new predictor name only together with a new model, and refuses a canary named
    # like the stable one, so the name travels with the model).
    predictor["model"] = canary["model"]
    if canary.get("name"):
        predictor["name"] = canary["name"]
    return [{"spec": {"predictor": predictor, "canary": None}} | done]


def rollback_patches(obj: dict[str, Any]) -> list[dict[str, Any]]:
    ann = obj["metadata"].get("annotations", {})
    done = {"metadata": {"annotations": {CANDIDATE: None}}}
    if mode_of(obj) == "standard":
        return [{"spec": {"canary": None}} | done]
    stable = ann.get(STABLE)
    if not stable:
        raise ClusterError(f"InferenceService {obj['metadata']['name']}: no {STABLE} annotation to roll back to")
    model = obj["metadata"].get("labels", {}).get(MODEL_LABEL)
    uri = obj["spec"]["predictor"]["model"]["storageUri"]
    # First all traffic back to the last rolled-out revision (instant), then make the spec say
    # so, so that the next reconcile does not bring the candidate back.
    return [{"spec": {"predictor": {"canaryTrafficPercent": 0}}},
            {"spec": {"predictor": {"canaryTrafficPercent": None,
                                    "model": {"storageUri": storage_uri(uri, model, stable)}}}} | done]


def preview_url(obj: dict[str, Any]) -> str | None:
    """Knative mode with tag routing: the URL of the traffic target tagged `latest`."""
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    for target in predictor.get("traffic") or []:
        if target.get("tag") == "latest" and target.get("url"):
            return target["url"]
    return None
