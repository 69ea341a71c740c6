"""Canary rollout on a KServe InferenceService: start, analyse, promote, roll back, pause, resume.

The analysis is the shared Flagger-style logic (components.stages.release.analysis); this module only
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
A/B and shadow (Standard mode with the Gateway API): the candidate gets an InferenceService of its
  own and the traffic an HTTPRoute of Conveyor's own (components/stages/release/route.py): weights for the
  split, a RequestMirror filter for the shadow, header rules that pin an arm. The stable's
  InferenceService keeps the state (annotation conveyor.dev/release-route names the route).
  Promote = all traffic to the candidate, the stable InferenceService takes its model, the route
  back to the stable alone, the candidate's InferenceService deleted; roll back (and a terminated
  release step) = the route back to the stable alone, the candidate's InferenceService deleted.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from components.cluster.deploy import (
    InferenceServiceApi,
    KubernetesInferenceServiceApi,
    apply_inference_service,
    checked_patch,
    wait_reconciled,
)
from components.cluster.deploy_config import DeployConfig
from components.cluster.isvc import build_inference_service
from components.cluster.kube import CustomObjects
from components.common.errors import ClusterError, ConfigError
from components.stages.release.analysis import CanaryState
from components.stages.release.artifacts import DeploymentRecord, ReplayRows
from components.stages.release.cluster_verbs import ManualVerbs
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.release.gauges import publisher
from components.stages.release.kserve_state import (
    CANDIDATE,
    CONFIG,
    MODEL_LABEL,
    ROLLOUT,
    ROUTE,
    ROUTED_STRATEGIES,
    STABLE,
    STATE,
    preview_url,
    promote_patches,
    read_plan,
    read_state,
    rollback_patches,
    state_annotation,
    weight_patch,
)
from components.stages.release.prometheus import PrometheusMetricsSource
from components.stages.release.records import experiment_result, store_record
from components.stages.release.rollout import now, observers, run_rollout
from components.stages.release.route import (
    RELEASE_OF,
    build_route,
    candidate_isvc,
    check_names,
    declared_split,
    route_name,
    route_patch,
)
from components.stages.release.strategies import Plan, begin
from components.stages.serve.security import ClientAuth


def check_cluster_strategy(rollout: RolloutConfig, deploy_cfg: DeployConfig) -> None:
    if rollout.strategy in ROUTED_STRATEGIES and deploy_cfg.mode != "standard":
        raise ConfigError(f"rollout.strategy {rollout.strategy!r} on KServe needs deploy.mode: standard (an "
                          "HTTPRoute of Conveyor's own in front of two Standard-mode InferenceServices, KServe's "
                          "Gateway API mode); in Knative mode use canary or bluegreen (docs/rollout.md)")


class KubernetesRouteApi(CustomObjects):
    """The release HTTPRoute (Gateway API v1) through the Kubernetes API."""

    def __init__(self):
        super().__init__("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")


class CanaryController(ManualVerbs):
    """Applies rollout decisions to one InferenceService and records them on it."""

    def __init__(self, api: InferenceServiceApi, name: str, namespace: str, ready_timeout_s: float = 600,
                 log: Callable[[str], None] = print, routes=None):
        self.api, self.name, self.namespace, self.log = api, name, namespace, log
        self.ready_timeout_s = ready_timeout_s
        self._route_api = routes  # the HTTPRoute API, made on first use (only A/B and shadow need it)

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
               rollout: RolloutConfig | None = None, baseline: float | None = None) -> dict[str, Any]:
        """First deployment: the candidate takes 100%. Otherwise a canary at the first step, or a
        blue-green preview at 0% (the `latest-` tag URL in Knative mode, a dark canary entry in
        Standard mode)."""
        rollout = rollout or RolloutConfig()
        check_cluster_strategy(rollout, deploy_cfg)
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
        if rollout.strategy in ROUTED_STRATEGIES:
            return self._deploy_routed(obj, deploy_cfg, Plan(cfg, rollout, baseline), model, stable, candidate)
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

    # -- A/B and shadow: the candidate's own InferenceService behind a route of Conveyor's own ------
    def routes(self):
        if self._route_api is None:
            self._route_api = KubernetesRouteApi()
        return self._route_api

    def route(self, obj: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The release HTTPRoute the rollout on `obj` (default: the stable InferenceService) runs on."""
        name = ((obj or self.get())["metadata"].get("annotations") or {}).get(ROUTE)
        return self.routes().get(name, self.namespace) if name else None

    def _put_route(self, wanted: dict[str, Any]) -> dict[str, Any]:
        """Create the route, or adopt it (Conveyor's own release route of this InferenceService) and
        make it say what `wanted` says; a route of that name that is not ours is left alone."""
        name = wanted["metadata"]["name"]
        current = self.routes().get(name, self.namespace)
        if current is None:
            self.routes().create(wanted)
            self.log(f"created HTTPRoute {self.namespace}/{name}")
        elif (current["metadata"].get("labels") or {}).get(RELEASE_OF) != self.name:
            raise ClusterError(f"HTTPRoute {self.namespace}/{name} exists and is not Conveyor's release route of "
                               f"{self.name} (label {RELEASE_OF}); rename or delete it")
        else:
            annotations = current["metadata"].get("annotations") or {}
            if current.get("spec") != wanted["spec"] or \
                    annotations != {**annotations, **wanted["metadata"]["annotations"]}:
                self.routes().patch(name, self.namespace, route_patch(current, wanted))
        return self.routes().get(name, self.namespace)

    def _deploy_routed(self, obj: dict[str, Any], deploy_cfg: DeployConfig, plan: Plan, model: str,
                       stable: str, candidate: str) -> dict[str, Any]:
        """The candidate's InferenceService (served under the stable's name, metrics role canary),
        then the route: a weighted split (ab) or a mirror (shadow); the state on the stable's object."""
        check_names(self.name)
        cfg, rollout = plan.canary, plan.rollout
        try:
            state = begin(plan)
        except ValueError as exc:  # an A/B with no baseline to plan its sample size on
            raise ConfigError(str(exc)) from exc
        manifest = build_inference_service(deploy_cfg.model_copy(update={"name": candidate_isvc(self.name)}),
                                           model, candidate)
        manifest["spec"]["predictor"]["model"]["env"] = [{"name": "CONVEYOR_SERVED_NAME", "value": self.name},
                                                         {"name": "CONVEYOR_ROLE", "value": "canary"}]
        manifest["metadata"]["labels"][RELEASE_OF] = self.name
        apply_inference_service(self.api, manifest, self.ready_timeout_s, log=self.log)
        mode = "split" if rollout.strategy == "ab" else "mirror"
        route = self._put_route(build_route(self.name, self.namespace, rollout.route, mode=mode,
                                            share=rollout.ab.split, stable=stable, candidate=candidate,
                                            salt=f"{stable}:{candidate}"))
        split = declared_split(route, self.name)
        if rollout.strategy == "ab":  # the experiment runs on the split the route declares
            state.weight = round(split["candidate"] * 100)
            state.result = {**(state.result or {}), "split": split["candidate"]}
        annotations = {STATE: state_annotation(state), CONFIG: cfg.model_dump_json(),
                       ROLLOUT: rollout.model_dump_json(), CANDIDATE: candidate, ROUTE: route_name(self.name)}
        obj = self._apply(obj, [{"metadata": {"annotations": annotations}}], None,
                          "ABStarted" if rollout.strategy == "ab" else "ShadowStarted",
                          f"{rollout.strategy} {candidate} vs stable {stable} on HTTPRoute "
                          f"{route_name(self.name)}: " + (f"{split['candidate']:.0%} of requests to the candidate"
                                                          if mode == "split" else
                                                          f"{split['mirrored']:.0%} of requests mirrored to it"))
        return obj

    def _route_to(self, obj: dict[str, Any], mode: str, share: float = 0.0) -> dict[str, Any]:
        ann = obj["metadata"].get("annotations") or {}
        plan = read_plan(obj)
        stable, candidate = ann.get(STABLE), ann.get(CANDIDATE)
        return self._put_route(build_route(self.name, self.namespace, plan.rollout.route, mode=mode, share=share,
                                           stable=stable, candidate=candidate, salt=f"{stable}:{candidate}"))

    def _end_routed(self, obj: dict[str, Any], state: CanaryState | None, promote: bool, reason: str,
                    message: str) -> dict[str, Any]:
        """Promotion or rollback of a routed release: no request is dropped on the way (the route
        sends everything to the candidate while the stable InferenceService takes its model), and
        nothing of the candidate is left behind."""
        ann = obj["metadata"].get("annotations") or {}
        candidate = ann.get(CANDIDATE)
        # the release is over: the route stays (idle, the stable alone) but no longer steers this object
        done: dict[str, Any] = {"metadata": {"annotations": {CANDIDATE: None, ROUTE: None}}}
        if promote:
            own = self.api.get(candidate_isvc(self.name), self.namespace)
            if own is None:
                raise ClusterError(f"InferenceService {self.namespace}/{candidate_isvc(self.name)} of candidate "
                                   f"{candidate} not found; nothing to promote")
            self._route_to(obj, "split", share=1.0)
            predictor = copy.deepcopy(own["spec"]["predictor"])
            predictor["model"].pop("env", None)  # the stable serves under its own name, as stable
            obj = self._apply(obj, [{"spec": {"predictor": predictor}}], None, "PromotionStarted",
                              f"all traffic to {candidate} while {self.name} takes its model")
            done["metadata"]["annotations"][STABLE] = candidate
            ann = {**ann, STABLE: candidate}
        self._put_route(build_route(self.name, self.namespace, read_plan(obj).rollout.route, mode="idle",
                                    stable=ann.get(STABLE), candidate=None))
        self.api.delete(candidate_isvc(self.name), self.namespace)
        self.log(f"deleted InferenceService {self.namespace}/{candidate_isvc(self.name)}")
        return self._apply(obj, [done], state, reason, message)

    # -- the analysis loop -------------------------------------------------------------------
    def analyze(self, source, cfg: CanaryConfig | None = None, once: bool = False,
                wait: Callable[[float], None] = time.sleep, replay=None,
                on_step: Callable[[CanaryState], None] | None = None) -> CanaryState:
        """Run intervals until the rollout is promoted, rolled back or paused (or one, with once)."""
        obj = self.get()
        plan = read_plan(obj, cfg)
        router = InferenceServiceRouter(self)
        model = obj["metadata"].get("labels", {}).get(MODEL_LABEL, self.name)
        return run_rollout(router, source, replay, plan, wait=wait, once=once,
                           log=lambda m: self.log(f"{self.namespace}/{self.name}: {m}"),
                           observe=observers(publisher(plan.rollout.pushgateway_url, model, router.versions,
                                                       self.log), on_step))

    def act(self, obj: dict[str, Any], state: CanaryState, action: str, evidence: str) -> dict[str, Any]:
        if (obj["metadata"].get("annotations") or {}).get(ROUTE):
            if action == "step_up":  # a passing shadow turned canary: the route's weights carry the steps
                self._route_to(obj, "split", share=state.weight / 100)
                return self._apply(obj, [{}], state, "CanaryStepUp", f"weight {state.weight}%: {evidence}")
            if action == "promote":
                return self._end_routed(obj, state, True, "CanaryPromoted", evidence)
            if action == "rollback":
                return self._end_routed(obj, state, False, "CanaryRolledBack",
                                        f"{state.failed} failed checks: {evidence}")
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
                        replay_rows: ReplayRows | None = None,
                        rollout: RolloutConfig | None = None, routes=None,
                        on_step: Callable[[CanaryState], None] | None = None) -> DeploymentRecord:
    """The pipeline's cluster deploy step: start (or adopt) the rollout, analyse it to the end,
    move the registry's champion alias on promotion, and store a deployment record.
    With `cfg.cluster_replay_requests` and `replay_rows` (texts, labels), labelled rows are sent
    every interval for the accuracy check: through the InferenceService's URL (canary, blue-green),
    or through the release route (A/B and shadow: pinned to an arm by its header, so the A/B's
    sticky assignment and the shadow's comparison reach the right predictor). A terminated step
    (SIGTERM, as KFP sends) rolls the release back: no candidate is left taking traffic."""

    # lazy: `kubectl conveyor` imports this module for every verb; only a rollout needs the registry
    # (pyarrow)
    from components.stages.registry.store import set_alias

    started = now()
    api = api or KubernetesInferenceServiceApi()
    ctl = CanaryController(api, deploy_cfg.name, deploy_cfg.namespace, cfg.ready_timeout_s, log=log, routes=routes)
    rollout = rollout or RolloutConfig()
    if rollout.strategy in ROUTED_STRATEGIES and not (cfg.cluster_replay_requests and replay_rows
                                                      and rollout.route.url):
        raise ConfigError(f"rollout.strategy {rollout.strategy!r} on KServe judges the candidate on labelled rows "
                          "sent through its route: set canary.cluster_replay_requests and rollout.route.url (the "
                          "Gateway's address as this step reaches it)")
    current = api.get(deploy_cfg.name, deploy_cfg.namespace)
    serving = ((current or {}).get("metadata", {}).get("annotations") or {}).get(STABLE)
    # an A/B plans its sample size on the stable's test accuracy (its model card), as locally
    baseline = _test_accuracy(store, model, serving) if serving and rollout.strategy == "ab" else None
    obj = ctl.deploy(deploy_cfg, cfg, model, candidate, rollout, baseline=baseline)
    state = read_state(obj)
    replay = None
    if state and state.phase == "Progressing":
        if source is None:
            source = PrometheusMetricsSource(cfg.prometheus, model, cfg.interval_s)
        if cfg.cluster_replay_requests and replay_rows:
            replay = _labelled_replay(ctl, obj, cfg, rollout, deploy_cfg, replay_rows)
        with rolled_back_on_sigterm(ctl):
            state = ctl.analyze(source, cfg, replay=replay, on_step=on_step)
        obj = ctl.get()
    stable = obj["metadata"].get("annotations", {}).get(STABLE)
    if stable == candidate:
        set_alias(store, model, "production", candidate, reason=f"{rollout.strategy} promoted on KServe")
    record = {"model": model, "candidate": candidate, "env": "production", "backend": "kserve",
              "strategy": rollout.strategy, "started_at": started, "finished_at": now(),
              "inference_service": f"{deploy_cfg.namespace}/{deploy_cfg.name}",
              "outcome": str(state.phase) if state else "None", "stable": stable,
              "replay_failed_requests": replay.failures if replay is not None else None,
              "state": state.to_json() if state else None, "config": cfg.model_dump(mode="json")}
    if rollout.strategy == "ab" and state is not None:
        record["experiment"] = experiment_result(candidate, serving, state, rollout)
    return store_record(store, record, state)


def _labelled_replay(ctl: CanaryController, obj: dict[str, Any], cfg: CanaryConfig, rollout: RolloutConfig,
                     deploy_cfg: DeployConfig, replay_rows: ReplayRows):
    """Where the labelled rows of each interval go: through the release route when the rollout has
    one (A/B, shadow), else through the InferenceService's URL (the preview's, for a blue-green on
    Knative)."""
    # lazy: `kubectl conveyor` imports this module for every verb; only a rollout needs the labelled
    # replay (numpy)
    from components.stages.release.replay import LabelledReplay

    if (obj["metadata"].get("annotations") or {}).get(ROUTE):
        return route_replay(ctl, obj, cfg, rollout, deploy_cfg.name, replay_rows)
    url = (obj.get("status") or {}).get("url")
    if not url:
        raise ClusterError(f"InferenceService {deploy_cfg.namespace}/{deploy_cfg.name} has no status.url "
                           "to replay labelled rows through")
    if rollout.strategy == "bluegreen" and deploy_cfg.mode == "knative":
        # at 0% the InferenceService URL reaches only the stable: the preview is the
        # `latest-` tag's URL (tag routing is on), which serves the newest revision
        url = preview_url(obj) or url
    return LabelledReplay(f"{url.rstrip('/')}/v1/models/{deploy_cfg.name}:predict", *replay_rows,
                          per_interval=cfg.cluster_replay_requests)


def _test_accuracy(store, model: str, version: str) -> float | None:
    from components.stages.registry.store import test_accuracy  # lazy: the registry (pyarrow)

    return test_accuracy(store, model, version)


def route_replay(ctl: CanaryController, obj: dict[str, Any], cfg: CanaryConfig, rollout: RolloutConfig, name: str,
                 rows: ReplayRows):
    """Labelled replay through the release route: the Gateway's URL with the route's hostname,
    each arm reached by its pin header; unpinned rows follow the route's own weights; A/B keys
    are assigned with the split the route declares (read again every time)."""
    from components.stages.release.local import Replayer  # lazy: as in run_cluster_rollout

    ann = obj["metadata"]["annotations"]
    stable, candidate = ann[STABLE], ann[CANDIDATE]
    route = ctl.route(obj)
    url = f"{rollout.route.url.rstrip('/')}/v1/models/{name}:predict"
    host = {"Host": route["spec"]["hostnames"][0]}
    header = rollout.route.arm_header
    return Replayer(*rows, urls={stable: url, candidate: url}, stable=stable, candidate=candidate, cfg=cfg,
                    per_interval=cfg.cluster_replay_requests, rollout=rollout,
                    headers={stable: {**host, header: "stable"}, candidate: {**host, header: "candidate"}},
                    split_url=url, split_headers=host,
                    share=lambda: declared_split(ctl.route() or route, name)["candidate"],
                    auth=ClientAuth.from_env())


@contextlib.contextmanager
def rolled_back_on_sigterm(ctl: CanaryController):
    """SIGTERM (KFP terminating the run) while the analysis runs: the release is rolled back before
    the step exits, as the launchers delete what they started; no candidate is left in traffic."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_terminate(signum, _frame):
        try:
            ctl.rollback()
        except ClusterError as exc:  # no rollout in progress any more, or the API refused: say so
            ctl.log(f"terminated; rollback not done: {exc}")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
