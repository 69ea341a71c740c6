"""Canary analysis: the decision logic, and fault tests with real model servers on loopback."""

from __future__ import annotations

import pytest

from components.stages.registry import store as registry
from components.stages.release.analysis import (
    Check,
    RoleMetrics,
    advance,
    histogram_quantile,
    js_distance,
    run_checks,
    start,
)
from components.stages.release.config import CanaryConfig

FAST = CanaryConfig(step_weights=[20, 50], max_weight=50, threshold=2, min_requests=8, max_p99_latency_ms=40,
                    max_latency_ratio=4.0, max_prediction_js=0.3, max_accuracy_drop=0.1,
                    min_labelled=10)


def test_histogram_quantile_and_js_match_their_definitions():
    buckets = {0.001: 50.0, 0.002: 90.0, 0.004: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.99, buckets) == pytest.approx(2 + 2 * 0.9)
    assert js_distance({"a": 1, "b": 1}, {"a": 1, "b": 1}) == 0
    assert js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)


def test_accuracy_drop_bound_matches_newcombe_and_ignores_sampling_noise():
    from components.stages.release.analysis import accuracy_drop_lower_bound

    # Newcombe (1998), Table II, method 10, two-sided 95% (= one-sided 97.5%) lower limits
    assert accuracy_drop_lower_bound(56, 70, 48, 80, 0.975) == pytest.approx(0.0524, abs=1e-4)
    assert accuracy_drop_lower_bound(9, 10, 3, 10, 0.975) == pytest.approx(0.1705, abs=1e-4)
    cfg = CanaryConfig(min_labelled=30, max_accuracy_drop=0.05)
    served = {"requests": 200, "latency_buckets": {0.01: 200.0, float("inf"): 200.0}, "predicted": {"a": 100}}

    def accuracy_check(stable_correct, stable_n, canary_correct, canary_n):
        checks = run_checks(RoleMetrics(labelled=stable_n, correct=stable_correct, **served),
                            RoleMetrics(labelled=canary_n, correct=canary_correct, **served), cfg)
        return next(c for c in checks if c.name == "labelled_accuracy_drop_vs_stable")

    noise = accuracy_check(155, 157, 40, 43)  # 0.987 vs 0.930: three more errors in 43 answers
    assert noise.value > 0.05 and noise.passed and "with 95% confidence" in noise.detail
    worse = accuracy_check(980, 1000, 900, 1000)  # 0.98 vs 0.90 on 1,000 each: a real regression
    assert not worse.passed
    flipped = accuracy_check(60, 60, 0, 30)
    assert not flipped.passed


def test_flagger_semantics_step_promote_rollback_pause():
    ok = [Check("success_rate", 1.0, 0.99, True)]
    bad = [Check("success_rate", 0.5, 0.99, False)]
    state = start(FAST)
    state, action = advance(state, ok, FAST)
    assert (action, state.weight) == ("step_up", 50)
    state, action = advance(state, ok, FAST)
    assert (action, state.phase, state.weight) == ("promote", "Promoted", 100)

    state = start(FAST)
    state, action = advance(state, bad, FAST)
    assert (action, state.failed, state.weight) == ("hold", 1, 20)
    state, action = advance(state, bad, FAST)
    assert (action, state.phase, state.weight) == ("rollback", "RolledBack", 0)  # after `threshold` failures

    no_data = run_checks(RoleMetrics(), RoleMetrics(reachable=False), FAST)
    assert no_data[0].passed is None
    state, action = advance(start(FAST), no_data, FAST)
    assert action == "hold" and state.failed == 1  # "no values found" counts as a failed check
    paused = FAST.model_copy(update={"no_data": "inconclusive"})
    state, action = advance(start(paused), no_data, paused)
    assert (action, state.phase) == ("pause", "Paused")


def _run(two_versions, chaos=None, metrics_url=None, cfg=FAST, rollout=None):
    from components.stages.release.local import run_local_canary

    store, stable, cand, texts, labels = two_versions
    registry.set_alias(store, "toy-model", "champion", stable)  # every test starts from the same champion
    return run_local_canary(store, "toy-model", cand, texts, labels, cfg, requests_per_interval=80,
                            canary_chaos=chaos, canary_metrics_url=metrics_url, log=lambda _m: None,
                            rollout=rollout)


def test_healthy_canary_is_promoted_and_its_state_is_published(two_versions):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from components.stages.release.config import RolloutConfig
    from tests.support.prometheus_proc import pushgateway

    store, stable, cand, *_ = two_versions
    with pushgateway() as gateway:
        record = _run(two_versions, rollout=RolloutConfig(pushgateway_url=gateway.url))
        with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as resp:
            families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    phases = {s.labels["phase"]: s.value for s in families["conveyor_rollout_phase"].samples}
    assert phases == {"Progressing": 0, "Paused": 0, "Promoted": 1, "RolledBack": 0}  # the last push wins
    [weight] = families["conveyor_rollout_weight_percent"].samples
    assert (weight.labels["model"], weight.labels["stable"], weight.labels["candidate"], weight.labels["strategy"]) \
        == ("toy-model", stable, cand, "canary")
    [intervals] = families["conveyor_rollout_intervals"].samples
    assert intervals.value == len(record["state"]["history"])
    assert record["outcome"] == "Promoted", record["state"]["history"]
    assert registry.resolve_version(store, "toy-model", "champion") == cand
    actions = [h["action"] for h in record["state"]["history"]]
    # Guarantees, not a count of intervals: on a slow machine an interval may hold for want of samples.
    assert actions[-1] == "promote" and "step_up" in actions and set(actions[:-1]) <= {"step_up", "hold"}, actions
    assert record["stable_failed_requests"] == 0
    assert store.exists(record["record_uri"][len(store.uri) + 1:])


@pytest.mark.parametrize("chaos, metrics_url, failing", [
    (["--chaos-error-rate", "0.3"], None, {"success_rate"}),
    # 50 ms added to a ~1-3 ms model: well over 10x slower, past both latency limits.
    (["--chaos-delay-ms", "50"], None, {"p99_latency_ms", "p99_latency_vs_stable"}),
    # make test-slow (~12 s): the shadow and A/B "wrong answers" runs check the labelled replay
    pytest.param(["--chaos-flip-labels"], None, {"labelled_accuracy_drop_vs_stable", "prediction_js_vs_stable"},
                 marks=pytest.mark.slow),
    (None, "http://127.0.0.1:9/metrics", {"canary_metrics"}),
])
def test_faulty_canary_is_rolled_back_within_threshold(two_versions, chaos, metrics_url, failing):
    store, stable, *_ = two_versions
    record = _run(two_versions, chaos=chaos, metrics_url=metrics_url)
    history = record["state"]["history"]
    assert record["outcome"] == "RolledBack", history
    assert len(history) == FAST.threshold  # rolled back within `threshold` intervals
    assert all(any(c["name"] in failing and c["passed"] is not True for c in h["checks"]) for h in history)
    assert registry.resolve_version(store, "toy-model", "champion") == stable  # champion unchanged
    assert record["stable_failed_requests"] == 0  # stable never interrupted
