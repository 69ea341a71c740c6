"""A/B and shadow on KServe: the candidate's own InferenceService and Conveyor's release HTTPRoute.

The objects are written through the in-memory API stand-ins
(tests/standins/kubernetes/objects.py), which check every write as the API server
would: the upstream HTTPRoute CRD with its CEL rules (a real CEL engine), the InferenceService CRD
and KServe's webhook. The release loop's faults run against a real Prometheus scraping real model
servers, with the traffic through a stand-in of the Gateway's data plane that applies the route as
written (tests/standins/gateway.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import urllib.error

import pytest

from components.cluster.deploy_config import DeployConfig
from components.common.errors import ClusterError, ConfigError
from components.stages.release.cluster import CanaryController, rolled_back_on_sigterm
from components.stages.release.cluster_status import status_report
from components.stages.release.config import CanaryConfig, PrometheusConfig, RolloutConfig
from components.stages.release.kserve_state import CANDIDATE, ROUTE, STABLE, read_state
from components.stages.release.route import RELEASE_OF, build_route, candidate_isvc, declared_split, route_state
from pipelines.kubectl_plugin import main as kubectl_conveyor
from tests.standins.kubernetes.objects import CustomObjects, InferenceServices
from tests.support.prometheus_proc import PrometheusProcess, prometheus_binary

NS, NAME = "team-a", "spam"
CFG = CanaryConfig(step_weights=[20, 50], max_weight=50, threshold=2, min_requests=8, interval_s=2.0,
                   max_p99_latency_ms=40, max_latency_ratio=4.0, max_prediction_js=0.3, max_accuracy_drop=0.1,
                   min_labelled=10, prometheus=PrometheusConfig(min_window_s=2.0, timeout_s=3.0))
ROUTE_NAME = f"{NAME}-release"


def _deploy_cfg(mode: str = "standard") -> DeployConfig:
    return DeployConfig(name=NAME, namespace=NS, mode=mode, store="s3://models-bucket")


def _release(strategy: str, **sections) -> tuple[InferenceServices, CustomObjects, CanaryController, RolloutConfig]:
    api, routes = InferenceServices(), CustomObjects()
    ctl = CanaryController(api, NAME, NS, ready_timeout_s=5, log=lambda _m: None, routes=routes)
    if strategy == "ab":
        sections = {**sections, "ab": {"baseline": 0.9, **sections.get("ab", {})}}
    rollout = RolloutConfig.model_validate({"strategy": strategy, **sections})
    ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v1", rollout)  # first deployment: 100%, no route yet
    ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v2", rollout)
    return api, routes, ctl, rollout


def test_ab_release_creates_the_candidate_service_and_a_weighted_route():
    api, routes, ctl, _ = _release("ab", ab={"split": 0.3})
    stable = ctl.get()
    ann = stable["metadata"]["annotations"]
    assert (ann[STABLE], ann[CANDIDATE], ann[ROUTE]) == ("v1", "v2", ROUTE_NAME)
    state = read_state(stable)
    assert (state.strategy, state.phase, state.weight, state.result["split"]) == ("ab", "Progressing", 30, 0.3)
    # the candidate's own InferenceService: Standard mode, served under the stable's name, role canary
    cand = api.get(candidate_isvc(NAME), NS)
    assert cand["metadata"]["labels"][RELEASE_OF] == NAME
    assert cand["spec"]["predictor"]["model"]["storageUri"].endswith("/toy-model/v2")
    assert {e["name"]: e["value"] for e in cand["spec"]["predictor"]["model"]["env"]} == {
        "CONVEYOR_SERVED_NAME": NAME, "CONVEYOR_ROLE": "canary"}
    route = routes.get(ROUTE_NAME, NS)  # written through the stand-in: CRD and CEL rules passed
    assert declared_split(route, NAME) == {"stable": 0.7, "candidate": 0.3, "mirrored": 0.0}
    assert route["spec"]["hostnames"] == ["spam-release.team-a.example.com"]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "kserve-ingress-gateway", "namespace": "kserve"}]
    pins = {r["name"]: r for r in route["spec"]["rules"]}
    assert pins["pin-candidate"]["backendRefs"][0]["name"] == "spam-candidate-predictor"
    assert route_state(route)["salt"] == "v1:v2"
    assert api.events[-1]["reason"] == "ABStarted" and "30% of requests to the candidate" in api.events[-1]["message"]


def test_shadow_release_mirrors_and_status_shows_it(capsys):
    api, routes, ctl, _ = _release("shadow")
    route = routes.get(ROUTE_NAME, NS)
    assert declared_split(route, NAME) == {"stable": 1.0, "candidate": 0.0, "mirrored": 1.0}
    mirror = route["spec"]["rules"][-1]["filters"][0]
    assert mirror == {"type": "RequestMirror", "requestMirror": {"backendRef": {
        "group": "", "kind": "Service", "name": "spam-candidate-predictor", "port": 80}, "percent": 100}}
    assert kubectl_conveyor(["rollout", "status", NAME, "-n", NS], api=api, routes=routes) == 0
    out = capsys.readouterr().out
    assert "shadow: Progressing" in out and "route: HTTPRoute spam-release (spam-release.team-a.example.com)" in out
    assert "100%  spam-candidate (mirrored copies, answers discarded)" in out
    report = status_report(ctl.get(), ctl.route())
    assert [t["percent"] for t in report["traffic"]] == [100, 0, 100]


def test_a_passing_shadow_turns_into_a_canary_on_the_routes_weights():
    from components.stages.release.strategies import Plan, advance_rollout

    api, routes, ctl, rollout = _release("shadow", shadow={"intervals": 1})
    obj = ctl.get()
    state, action = advance_rollout(read_state(obj), [], Plan(CFG, rollout))
    assert (action, state.strategy, state.weight) == ("step_up", "canary", 20)
    ctl.act(obj, state, action, "shadow passed")
    split = declared_split(routes.get(ROUTE_NAME, NS), NAME)
    assert (split["candidate"], split["mirrored"]) == (0.2, 0.0)
    assert api.events[-1]["reason"] == "CanaryStepUp"


@pytest.mark.parametrize("strategy", ["ab", "shadow"])
def test_promote_moves_the_model_without_a_gap_and_leaves_nothing_behind(strategy, capsys):
    api, routes, ctl, _ = _release(strategy)
    assert kubectl_conveyor(["rollout", "promote", NAME, "-n", NS], api=api, routes=routes) == 0
    assert "Promoted at 100%" in capsys.readouterr().out
    stable = ctl.get()
    assert stable["metadata"]["annotations"][STABLE] == "v2" and CANDIDATE not in stable["metadata"]["annotations"]
    assert stable["spec"]["predictor"]["model"]["storageUri"].endswith("/toy-model/v2")
    assert "env" not in stable["spec"]["predictor"]["model"]  # the stable serves under its own name again
    assert api.get(candidate_isvc(NAME), NS) is None and candidate_isvc(NAME) in api.deleted
    shares = [declared_split(obj, NAME)["candidate"] for verb, obj in routes.writes if verb in ("create", "patch")]
    assert shares[-2:] == [1.0, 0.0]  # all traffic on the candidate while the stable took its model, then idle
    idle = routes.get(ROUTE_NAME, NS)
    assert [r["name"] for r in idle["spec"]["rules"]] == ["split"]  # no pins, no mirror: the stable only
    assert route_state(idle) == {"mode": "idle", "stable": "v2", "candidate": None, "salt": "", "share": 0.0}
    assert api.events[-1]["reason"] == "CanaryPromoted"
    assert ROUTE not in stable["metadata"]["annotations"]  # the next release starts from a plain object
    ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v3", RolloutConfig(strategy="canary"))
    nxt = ctl.get()
    assert nxt["spec"]["canary"][0]["trafficPercent"] == CFG.step_weights[0]  # a canary the usual way
    assert ctl.promote().phase == "Promoted" and ctl.get()["metadata"]["annotations"][STABLE] == "v3"


@pytest.mark.parametrize("strategy", ["ab", "shadow"])
def test_rollback_restores_the_route_and_deletes_the_candidate(strategy, capsys):
    api, routes, ctl, _ = _release(strategy)
    assert kubectl_conveyor(["rollout", "rollback", NAME, "-n", NS], api=api, routes=routes) == 0
    assert "RolledBack at 0%" in capsys.readouterr().out
    stable = ctl.get()
    assert stable["metadata"]["annotations"][STABLE] == "v1"
    assert stable["spec"]["predictor"]["model"]["storageUri"].endswith("/toy-model/v1")
    assert api.get(candidate_isvc(NAME), NS) is None
    assert declared_split(routes.get(ROUTE_NAME, NS), NAME) == {"stable": 1.0, "candidate": 0.0, "mirrored": 0.0}
    assert api.events[-1]["reason"] == "CanaryRolledBack" and api.events[-1]["type"] == "Warning"


def test_a_retried_step_adopts_its_release_and_completes_a_half_done_one():
    api, routes, ctl, rollout = _release("ab")
    writes, patches = len(routes.writes), len(api.patches)
    ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v2", rollout)  # the same release: adopted as it is
    assert (len(routes.writes), len(api.patches)) == (writes, patches)
    # a step that died after creating the candidate's InferenceService, before the route and state
    api2, routes2 = InferenceServices(), CustomObjects()
    ctl2 = CanaryController(api2, NAME, NS, ready_timeout_s=5, log=lambda _m: None, routes=routes2)
    ctl2.deploy(_deploy_cfg(), CFG, "toy-model", "v1", rollout)
    api2.create(api.get(candidate_isvc(NAME), NS) | {"status": {}})
    ctl2.deploy(_deploy_cfg(), CFG, "toy-model", "v2", rollout)
    assert read_state(ctl2.get()).phase == "Progressing" and routes2.get(ROUTE_NAME, NS) is not None


def test_a_route_of_the_same_name_that_is_not_ours_is_left_alone():
    api, routes = InferenceServices(), CustomObjects()
    foreign = build_route(NAME, NS, RolloutConfig().route, mode="idle", stable="x", candidate=None)
    foreign["metadata"]["labels"] = {"team": "web"}
    routes.create(foreign)
    ctl = CanaryController(api, NAME, NS, ready_timeout_s=5, log=lambda _m: None, routes=routes)
    rollout = RolloutConfig(strategy="ab", ab={"baseline": 0.9})
    ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v1", rollout)
    with pytest.raises(ClusterError, match="exists and is not Conveyor's release route of spam"):
        ctl.deploy(_deploy_cfg(), CFG, "toy-model", "v2", rollout)
    assert routes.get(ROUTE_NAME, NS)["metadata"]["labels"] == {"team": "web"}


def test_routed_strategies_are_refused_where_they_cannot_run():
    ctl = CanaryController(InferenceServices(), NAME, NS, ready_timeout_s=5, log=lambda _m: None,
                           routes=CustomObjects())
    for strategy in ("ab", "shadow"):
        with pytest.raises(ConfigError, match=f"'{strategy}' on KServe needs deploy.mode: standard"):
            ctl.deploy(_deploy_cfg("knative"), CFG, "toy-model", "v1", RolloutConfig(strategy=strategy))
    from components.stages.release.cluster import run_cluster_rollout

    with pytest.raises(ConfigError, match=r"set canary\.cluster_replay_requests and rollout\.route\.url"):
        run_cluster_rollout(None, _deploy_cfg(), CFG, "toy-model", "v2", api=InferenceServices(),
                            routes=CustomObjects(), rollout=RolloutConfig(strategy="ab"), log=lambda _m: None)


def test_a_terminated_release_step_rolls_back():
    api, routes, ctl, _ = _release("shadow")
    with pytest.raises(SystemExit) as exit_, rolled_back_on_sigterm(ctl):
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5)  # the handler runs on the main thread and raises SystemExit
    assert exit_.value.code == 128 + signal.SIGTERM
    assert read_state(ctl.get()).phase == "RolledBack"
    assert api.get(candidate_isvc(NAME), NS) is None
    assert declared_split(routes.get(ROUTE_NAME, NS), NAME)["mirrored"] == 0.0


# -- the release loop on the cluster backend, with its faults ------------------------------------

needs_prometheus = pytest.mark.skipif(prometheus_binary() is None, reason="run `make prometheus` first")
FAULTS = {"5xx": ["--chaos-error-rate", "0.3"], "slow": ["--chaos-delay-ms", "50"],
          "wrong answers": ["--chaos-flip-labels"], "no metrics": None}


def _cases(strategy: str, *in_make_test: str):
    return [pytest.param(strategy, f, marks=() if f in in_make_test else pytest.mark.slow)
            for f in (None, *FAULTS)]


class Users(threading.Thread):
    """Clients of the experiment's hostname, through the Gateway (unlabelled texts)."""

    def __init__(self, url: str, host: str, texts: list[str]):
        super().__init__(daemon=True)
        self.url, self.host, self.texts = url, host, texts
        self.stop = threading.Event()

    def run(self):
        from components.stages.serve.infra import http_json

        i = 0
        while not self.stop.is_set():
            with contextlib.suppress(urllib.error.URLError, OSError):
                http_json(self.url, {"instances": [self.texts[i % len(self.texts)]]}, timeout=5,
                          headers={"Host": self.host})
            i += 1


@needs_prometheus
@pytest.mark.parametrize("strategy, fault", _cases("ab") + _cases("shadow", "5xx"))
def test_routed_release_with_real_prometheus(two_versions, strategy, fault):
    """The cluster release step end to end: the candidate's InferenceService and the route written,
    Prometheus scraping both predictors (role and version labels), users and the labelled replay
    through the Gateway as the route directs them, the verdict, and the route and services left
    as the outcome says."""
    from components.stages.registry.store import resolve_version, set_alias
    from components.stages.release.cluster import run_cluster_rollout
    from components.stages.release.prometheus import PrometheusMetricsSource
    from components.stages.serve.infra import ServerProcess, http_json
    from tests.standins.gateway import GatewayStandIn

    store, stable, cand, texts, labels = two_versions
    set_alias(store, "toy-model", "champion", stable)
    api, routes = InferenceServices(), CustomObjects()
    sections = {"ab": {"ab": {"split": 0.5, "mde": 0.2, "baseline": 0.9, "key": "user_id",
                              "on_no_difference": "promote"}},
                "shadow": {"shadow": {"intervals": 1, "min_agreement": 0.8}}}[strategy]
    chaos = FAULTS.get(fault) if fault else None
    with ServerProcess(f"toy-model@{stable}", store.uri, name=NAME, role="stable", wait=False) as s, \
            ServerProcess(f"toy-model@{cand}", store.uri, name=NAME, role="canary", extra=chaos, wait=False) as c:
        s.wait_ready()
        c.wait_ready()
        path = f"/v1/models/{NAME}:predict"
        for server in (s, c):  # warm up before Prometheus' first scrape, as the other release tests do
            for text in texts[:30]:
                http_json(server.url + path, {"instances": [text]}, timeout=10)
        gateway = GatewayStandIn(routes, NS, ROUTE_NAME, {"spam-predictor": s.url,
                                                          "spam-candidate-predictor": c.url})
        rollout = RolloutConfig.model_validate({"strategy": strategy, "route": {"url": gateway.url}, **sections})
        cfg = CFG.model_copy(update={"cluster_replay_requests": 80}, deep=True)
        CanaryController(api, NAME, NS, ready_timeout_s=5, log=lambda _m: None, routes=routes).deploy(
            _deploy_cfg(), cfg, "toy-model", stable, rollout)
        targets = [s.url[len("http://"):], c.url[len("http://"):]]
        with PrometheusProcess(targets) if fault != "no metrics" else contextlib.nullcontext() as prom:
            cfg.prometheus.url = prom.url if prom else "http://127.0.0.1:9"
            users = Users(gateway.url + path, "spam-release.team-a.example.com", texts)
            users.start()
            try:
                record = run_cluster_rollout(
                    store, _deploy_cfg(), cfg, "toy-model", cand, api=api, routes=routes, log=lambda _m: None,
                    source=PrometheusMetricsSource(cfg.prometheus, "toy-model", cfg.interval_s),
                    replay_rows=(texts, labels), rollout=rollout)
            finally:
                users.stop.set()
                users.join()
                gateway.close()
    history = record.state["history"]
    obj = api.get(NAME, NS)
    idle = declared_split(routes.get(ROUTE_NAME, NS), NAME)
    assert idle == {"stable": 1.0, "candidate": 0.0, "mirrored": 0.0}  # the route is back to the stable alone
    assert api.get(candidate_isvc(NAME), NS) is None  # and the candidate's InferenceService is gone
    if strategy == "shadow":
        assert gateway.mirrored["spam-candidate-predictor"] > 0  # users' requests were mirrored to it
    if fault is None:
        assert record.outcome == "Promoted", json.dumps(history)
        assert obj["metadata"]["annotations"][STABLE] == cand
        assert resolve_version(store, "toy-model", "champion") == cand
        if strategy == "shadow":
            assert history[0]["stage"] == "shadow -> canary"
            agreement = next(x for x in history[0]["checks"] if x["name"] == "agreement_with_stable")
            assert agreement["passed"] and agreement["value"] >= 0.8
        else:  # two healthy models: no difference of mde at the planned size (promote), or the candidate wins
            result = record.experiment
            assert result["verdict"] in ("no_difference", "winner") and result["winner"] in (None, cand), result
            assert result["split"] == 0.5
        assert gateway.served["spam-candidate-predictor"] > 0
    else:
        assert record.outcome == "RolledBack", json.dumps(history)
        assert obj["metadata"]["annotations"][STABLE] == stable
        assert resolve_version(store, "toy-model", "champion") == stable
        failing = {x["name"] for h in history for x in h["checks"] if x["passed"] is not True}
        expected = {"5xx": "success_rate", "slow": "p99_latency_ms", "no metrics": "canary_metrics",
                    "wrong answers": "agreement_with_stable" if strategy == "shadow" else None}[fault]
        if strategy == "ab":
            result = record.experiment
            assert result["split"] == 0.5  # the split the route declared
            if fault == "wrong answers":  # the candidate answers every label wrong: the stable wins
                assert result["verdict"] == "winner" and result["winner"] == stable and result["high"] < 0
                n = result["n"]
                assert n["stable"] > 0 and n["candidate"] > 0  # labelled outcomes counted per arm, by who answered
            else:
                assert result["verdict"] == "stopped_by_guardrail" and expected in failing
        else:
            assert expected in failing and all(h["weight"] == 0 for h in history)  # no user saw the candidate


def test_assign_prints_the_header_that_pins_a_sticky_key_to_its_arm(capsys):
    from components.stages.release.experiment import assign_arm

    api, routes, _, _ = _release("ab", ab={"split": 0.5})
    arms = {}
    for key in ("user-1", "user-2", "user-3", "user-4", "user-5", "user-6"):
        assert kubectl_conveyor(["rollout", "assign", NAME, key, "-n", NS], api=api, routes=routes) == 0
        arms[key] = capsys.readouterr().out.strip()
        assert arms[key] == f"x-conveyor-arm: {assign_arm(key, 0.5, salt='v1:v2')}"
    assert {a.split(": ")[1] for a in arms.values()} == {"stable", "candidate"}
    api2, routes2, _, _ = _release("shadow")
    assert kubectl_conveyor(["rollout", "assign", NAME, "user-1", "-n", NS], api=api2, routes=routes2) == 9
    assert "has no A/B release running on a route" in capsys.readouterr().err
