"""Canary rollout on a KServe InferenceService: start, analyse, promote, roll back, pause, resume.

The analysis is the shared Flagger-style logic (components.canary.analysis); this module only
translates its decisions into InferenceService patches for the two KServe modes and keeps the
rollout state on the object itself:
  annotation conveyor.dev/canary         phase, weight, failed checks, last analysis (JSON)
  annotation conveyor.dev/canary-config  the CanaryConfig the rollout started with (JSON)
  Events (reason CanaryStepUp/CanaryHold/CanaryPromoted/CanaryRolledBack/...) one per decision
so `kubectl describe isvc NAME` shows the history and `analyze` resumes where it stopped, from
any machine. Every patch is applied locally first and the result validated against the kserve
SDK models before it is sent.

Knative mode: weight = spec.predictor.canaryTrafficPercent (new revision vs last rolled out);
  promote = drop the field; roll back = 0, then point the predictor back at the stable version.
Standard mode (KServe >= 0.20): weight = spec.canary[0].trafficPercent; promote = the predictor
  takes the canary's model and the canary entry goes; roll back = the canary entry goes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from components.canary.analysis import CanaryState
from components.canary.config import CanaryConfig, RolloutConfig
from components.canary.gauges import publisher
from components.canary.prometheus import PrometheusMetricsSource
from components.canary.rollout import now, run_rollout
from components.canary.strategies import Plan, begin, switch
from components.common.errors import ClusterError, ConfigError
from components.common.layout import deployment_record_key
from components.deploy.cluster import (
    InferenceServiceApi,
    KubernetesInferenceServiceApi,
    apply_inference_service,
    checked_patch,
    wait_reconciled,
)
from components.deploy.config import DeployConfig
from components.deploy.isvc import MODE_ANNOTATION, build_inference_service, storage_uri

STATE = "conveyor.dev/canary"
CONFIG = "conveyor.dev/canary-config"
ROLLOUT = "conveyor.dev/rollout-config"  # the RolloutConfig (strategy) the rollout started with
# Strategies the KServe backend carries out; A/B and shadow need a router in front of the
# InferenceService (an InferenceGraph or an HTTPRoute with mirroring), which is not built yet.
CLUSTER_STRATEGIES = ("canary", "bluegreen")
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


def check_cluster_strategy(rollout: RolloutConfig) -> None:
    if rollout.strategy not in CLUSTER_STRATEGIES:
        raise ConfigError(f"rollout.strategy {rollout.strategy!r} runs with the local backend only; on KServe "
                          f"use one of {', '.join(CLUSTER_STRATEGIES)} (A/B and shadow need a router in front of "
                          "the InferenceService, see docs/rollout.md)")


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


class CanaryController:
    """Applies rollout decisions to one InferenceService and records them on it."""

    def __init__(self, api: InferenceServiceApi, name: str, namespace: str, ready_timeout_s: float = 600,
                 log: Callable[[str], None] = print):
        self.api, self.name, self.namespace, self.log = api, name, namespace, log
        self.ready_timeout_s = ready_timeout_s

    def get(self) -> dict[str, Any]:
        obj = self.api.get(self.name, self.namespace)
        if obj is None:
            raise ClusterError(f"InferenceService {self.namespace}/{self.name} not found")
        return obj

    def _apply(self, obj: dict[str, Any], patches: list[dict[str, Any]], state: CanaryState | None,
               reason: str, message: str, wait: bool = True) -> dict[str, Any]:
        for i, patch in enumerate(patches):
            patch = copy.deepcopy(patch)
            if i == len(patches) - 1 and state is not None:
                patch.setdefault("metadata", {}).setdefault("annotations", {})[STATE] = state_annotation(state)
            # optimistic concurrency: a change made meanwhile (a human's pause) makes this a 409
            patch.setdefault("metadata", {})["resourceVersion"] = obj["metadata"].get("resourceVersion")
            checked_patch(obj, patch)
            obj = self.api.patch(self.name, self.namespace, patch)
            if wait and "spec" in patch:
                obj = wait_reconciled(self.api, self.name, self.namespace, self.ready_timeout_s)
        self.api.event(obj, reason, message, "Warning" if reason in ("CanaryRolledBack", "CanaryFailedCheck")
                       else "Normal")
        self.log(f"{self.namespace}/{self.name}: {reason}: {message}")
        return obj

    # -- starting a rollout -------------------------------------------------------------------
    def deploy(self, deploy_cfg: DeployConfig, cfg: CanaryConfig, model: str, candidate: str,
               rollout: RolloutConfig | None = None) -> dict[str, Any]:
        """First deployment: the candidate takes 100%. Otherwise a canary at the first step, or a
        blue-green preview at 0% (the `latest-` tag URL in Knative mode, a dark canary entry in
        Standard mode)."""
        rollout = rollout or RolloutConfig()
        check_cluster_strategy(rollout)
        obj = self.api.get(self.name, self.namespace)
        stable = obj and obj["metadata"].get("annotations", {}).get(STABLE)
        if obj is None or not stable:
            manifest = build_inference_service(deploy_cfg, model, candidate)
            manifest["metadata"]["annotations"][STATE] = state_annotation(CanaryState(weight=100, phase="Promoted"))

            obj = apply_inference_service(self.api, manifest, self.ready_timeout_s, log=self.log)
            self.api.event(obj, "CanaryPromoted", f"first deployment of {model} {candidate}: takes 100%")
            return obj
        current = read_state(obj)
        if current and current.phase in ("Progressing", "Paused"):
            running = obj["metadata"]["annotations"].get(CANDIDATE)
            if running == candidate:
                return obj  # a retried step adopts its own rollout
            raise ClusterError(f"InferenceService {self.namespace}/{self.name}: canary of {running} is "
                               f"{current.phase}; promote or roll it back first")
        if stable == candidate:
            self.log(f"{candidate} is already the stable version; nothing to roll out")
            return obj
        state = begin(Plan(cfg, rollout))
        manifest = build_inference_service(deploy_cfg, model, stable, candidate, canary_percent=state.weight)
        manifest["metadata"]["annotations"][STATE] = state_annotation(state)
        manifest["metadata"]["annotations"][CONFIG] = cfg.model_dump_json()
        manifest["metadata"]["annotations"][ROLLOUT] = rollout.model_dump_json()

        obj = apply_inference_service(self.api, manifest, self.ready_timeout_s, log=self.log)
        if rollout.strategy == "bluegreen":
            self.api.event(obj, "BlueGreenPreview", f"preview {candidate} at 0% beside stable {stable}")
        else:
            self.api.event(obj, "CanaryStarted", f"canary {candidate} vs stable {stable} at {state.weight}%")
        return obj

    # -- the analysis loop -------------------------------------------------------------------
    def analyze(self, source, cfg: CanaryConfig | None = None, once: bool = False,
                wait: Callable[[float], None] = time.sleep, replay=None) -> CanaryState:
        """Run intervals until the rollout is promoted, rolled back or paused (or one, with once)."""
        obj = self.get()
        plan = read_plan(obj, cfg)
        router = InferenceServiceRouter(self)
        model = obj["metadata"].get("labels", {}).get(MODEL_LABEL, self.name)
        return run_rollout(router, source, replay, plan, wait=wait, once=once,
                           log=lambda m: self.log(f"{self.namespace}/{self.name}: {m}"),
                           observe=publisher(plan.rollout.pushgateway_url, model, router.versions, self.log))

    def act(self, obj: dict[str, Any], state: CanaryState, action: str, evidence: str) -> dict[str, Any]:
        if action == "step_up":
            return self._apply(obj, [weight_patch(obj, state.weight)], state, "CanaryStepUp",
                               f"weight {state.weight}%: {evidence}")
        if action == "switch":  # blue-green: the stable keeps running behind it until the final promote
            return self._apply(obj, [weight_patch(obj, 100)], state, "BlueGreenSwitched",
                               f"all traffic to the candidate; post-promotion analysis follows: {evidence}")
        if action == "promote":
            return self._apply(obj, promote_patches(obj), state, "CanaryPromoted", evidence)
        if action == "rollback":
            return self._apply(obj, rollback_patches(obj), state, "CanaryRolledBack",
                               f"{state.failed} failed checks: {evidence}")
        if action == "pause":
            return self._apply(obj, [{}], state, "CanaryPaused", f"inconclusive (no data): {evidence}")
        reason = "CanaryFailedCheck" if state.history and any(
            c["passed"] is not True for c in state.history[-1]["checks"]) else "CanaryHold"
        return self._apply(obj, [{}], state, reason, f"weight {state.weight}%: {evidence}")

    # -- manual verbs (kubectl conveyor canary ...) ---------------------------------------------
    def _manual(self, want: tuple[str, ...], verb: str) -> tuple[dict[str, Any], CanaryState]:
        obj = self.get()
        state = read_state(obj)
        if state is None or state.phase not in want:
            phase = state.phase if state else "no rollout"
            raise ClusterError(f"InferenceService {self.namespace}/{self.name}: cannot {verb} a canary that is "
                               f"{phase} (expected {' or '.join(want)})")
        return obj, state

    def _end_by_user(self, verb: str, action: str, phase: str, weight: int, patches, message: str) -> CanaryState:
        obj, state = self._manual(("Progressing", "Paused"), verb)
        state.phase, state.weight = phase, weight
        state.history.append({"at": now(), "action": action, "weight": weight, "failed": state.failed,
                              "checks": [], "by": "user"})
        self._apply(obj, patches(obj), state, f"Canary{phase}", message)
        return state

    def promote(self, full: bool = False) -> CanaryState:
        """Canary: all traffic to the candidate now. Blue-green before the switch: the switch (as
        Argo Rollouts' promote), post-promotion analysis still to run; `full` skips that too."""
        obj, state = self._manual(("Progressing", "Paused"), "promote")
        if state.strategy == "bluegreen" and state.stage == "preview" and not full:
            switch(state)
            state.history.append({"at": now(), "action": "switch", "weight": 100, "failed": 0, "checks": [],
                                  "stage": "preview", "by": "user"})
            self._apply(obj, [weight_patch(obj, 100)], state, "BlueGreenSwitched",
                        "switched by user; run `kubectl conveyor rollout analyze` for post-promotion analysis")
            return state
        return self._end_by_user("promote", "promote", "Promoted", 100, promote_patches, "promoted by user")

    def rollback(self) -> CanaryState:
        return self._end_by_user("roll back", "rollback", "RolledBack", 0, rollback_patches, "rolled back by user")

    def pause(self) -> CanaryState:
        obj, state = self._manual(("Progressing",), "pause")
        state.phase = "Paused"
        self._apply(obj, [{}], state, "CanaryPaused", f"paused by user at {state.weight}%")
        return state

    def resume(self) -> CanaryState:
        obj, state = self._manual(("Paused",), "resume")
        state.phase = "Progressing"
        self._apply(obj, [{}], state, "CanaryResumed", f"resumed by user at {state.weight}%")
        return state


class InferenceServiceRouter:
    """The rollout's Router on the cluster: the state and both versions live on the InferenceService
    (annotations), read fresh every time, and each action is a patch KServe reconciles."""

    def __init__(self, ctl: CanaryController):
        self.ctl = ctl
        self.obj: dict[str, Any] | None = None

    def state(self) -> CanaryState | None:
        self.obj = self.ctl.get()
        return read_state(self.obj)

    def versions(self) -> tuple[str, str]:
        ann = self.obj["metadata"].get("annotations", {})
        stable, candidate = ann.get(STABLE), ann.get(CANDIDATE)
        if not candidate:
            raise ClusterError(f"InferenceService {self.ctl.namespace}/{self.ctl.name}: Progressing without "
                               f"{CANDIDATE}")
        return stable, candidate

    def apply(self, state: CanaryState, action: str, evidence: str) -> None:
        self.obj = self.ctl.act(self.obj, state, action, evidence)


def run_cluster_rollout(store, deploy_cfg: DeployConfig, cfg: CanaryConfig, model: str, candidate: str,
                        api: InferenceServiceApi | None = None, source=None, log=print,
                        replay_rows: tuple[list[str], list[str]] | None = None,
                        rollout: RolloutConfig | None = None) -> dict[str, Any]:
    """The pipeline's cluster deploy step: start (or adopt) the rollout, analyse it to the end,
    move the registry's champion alias on promotion, and store a deployment record.
    With `cfg.cluster_replay_requests` and `replay_rows` (texts, labels), labelled rows are sent
    through the InferenceService's URL every interval for the accuracy check."""

    # lazy: `kubectl conveyor` imports this module for every verb; only a rollout needs the registry
    # (pyarrow) and the labelled replay (numpy)
    from components.canary.replay import LabelledReplay
    from components.registry.store import set_alias

    started = now()
    api = api or KubernetesInferenceServiceApi()
    ctl = CanaryController(api, deploy_cfg.name, deploy_cfg.namespace, cfg.ready_timeout_s, log=log)
    rollout = rollout or RolloutConfig()
    obj = ctl.deploy(deploy_cfg, cfg, model, candidate, rollout)
    state = read_state(obj)
    replay = None
    if state and state.phase == "Progressing":
        if source is None:

            source = PrometheusMetricsSource(cfg.prometheus, model, cfg.interval_s)
        if cfg.cluster_replay_requests and replay_rows:

            url = (obj.get("status") or {}).get("url")
            if not url:
                raise ClusterError(f"InferenceService {deploy_cfg.namespace}/{deploy_cfg.name} has no status.url "
                                   "to replay labelled rows through")
            if rollout.strategy == "bluegreen" and deploy_cfg.mode == "knative":
                # at 0% the InferenceService URL reaches only the stable: the preview is the
                # `latest-` tag's URL (tag routing is on), which serves the newest revision
                url = preview_url(obj) or url
            replay = LabelledReplay(f"{url.rstrip('/')}/v1/models/{deploy_cfg.name}:predict", *replay_rows,
                                    per_interval=cfg.cluster_replay_requests)
        state = ctl.analyze(source, cfg, replay=replay)
        obj = ctl.get()
    stable = obj["metadata"].get("annotations", {}).get(STABLE)
    if stable == candidate:
        set_alias(store, model, "champion", candidate)
    record = {"model": model, "candidate": candidate, "backend": "kserve", "strategy": rollout.strategy,
              "started_at": started,
              "finished_at": now(), "inference_service": f"{deploy_cfg.namespace}/{deploy_cfg.name}",
              "outcome": state.phase if state else "None", "stable": stable,
              "replay_failed_requests": replay.failures if replay is not None else None,
              "state": state.to_json() if state else None, "config": cfg.model_dump(mode="json")}
    key = deployment_record_key(model, record["finished_at"], candidate)
    store.write_json(key, record)
    record["record_uri"] = store.url(key)
    return record


def preview_url(obj: dict[str, Any]) -> str | None:
    """Knative mode with tag routing: the URL of the traffic target tagged `latest`."""
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    for target in predictor.get("traffic") or []:
        if target.get("tag") == "latest" and target.get("url"):
            return target["url"]
    return None


def status_report(obj: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl conveyor canary status` shows: traffic split, revisions, last analysis."""
    ann = obj["metadata"].get("annotations", {})
    state = read_state(obj)
    status = obj.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    mode = mode_of(obj)
    if mode == "knative":
        traffic = [{"revision": t.get("revisionName"), "percent": t.get("percent"), "tag": t.get("tag"),
                    "latest": t.get("latestRevision")} for t in predictor.get("traffic") or []]
    else:
        canary = obj["spec"].get("canary") or []
        share = sum(c.get("trafficPercent", 0) for c in canary)
        traffic = [{"revision": "predictor (stable)", "percent": 100 - share}] + [
            {"revision": f"canary[{i}]", "percent": c.get("trafficPercent", 0)} for i, c in enumerate(canary)]
    ready = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return {
        "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "mode": mode,
        "stable": ann.get(STABLE), "candidate": ann.get(CANDIDATE),
        "phase": state.phase if state else None, "weight": state.weight if state else None,
        "strategy": state.strategy if state else None, "stage": (state.stage or None) if state else None,
        "preview_url": preview_url(obj),
        "failed_checks": state.failed if state else None, "traffic": traffic,
        "revisions": {k: predictor.get(k) for k in ("latestCreatedRevision", "latestReadyRevision",
                                                     "latestRolledoutRevision", "previousRolledoutRevision")
                      if predictor.get(k)},
        "conditions": ready,
        "last_analysis": state.history[-1] if state and state.history else None,
    }


def format_status(report: dict[str, Any]) -> str:
    lines = [f"InferenceService {report['namespace']}/{report['name']} ({report['mode']} mode)",
             f"  stable {report['stable']}  candidate {report['candidate'] or '-'}",
             f"  {report.get('strategy') or 'canary'}: {report['phase'] or 'none'}  weight {report['weight']}%  "
             f"failed checks {report['failed_checks']}" + (f"  stage {report['stage']}" if report.get("stage") else ""),
             "  traffic:"]
    lines += [f"    {t['percent']:>3}%  {t['revision']}" + (f"  (tag {t['tag']})" if t.get("tag") else "")
              for t in report["traffic"]] or ["    (no traffic status yet)"]
    if report.get("preview_url"):
        lines.append(f"  preview: {report['preview_url']}")
    if report["revisions"]:
        lines.append("  revisions: " + ", ".join(f"{k}={v}" for k, v in report["revisions"].items()))
    if report["conditions"]:
        lines.append("  conditions: " + ", ".join(f"{k}={v}" for k, v in report["conditions"].items()))
    last = report["last_analysis"]
    if last:
        lines.append(f"  last analysis {last.get('at')}: {last['action']} at {last['weight']}%"
                     + (" (by user)" if last.get("by") else ""))
        for c in last["checks"]:
            verdict = {True: "ok", False: "FAILED", None: "no data"}[c["passed"]]
            value = "-" if c["value"] is None else f"{c['value']:.4g}"
            lines.append(f"    {c['name']:<34} {value:>10}  limit {c['threshold']:<8g} {verdict}"
                         + (f"  ({c['detail']})" if c.get("detail") else ""))
    return "\n".join(lines)
