"""The rollout loop with real model servers on loopback: a healthy canary is promoted and its state
published; a faulty one is rolled back within its threshold."""

from __future__ import annotations

import pytest

from components.stages.registry import store as registry
from tests.support.canary import FAST


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
    assert intervals.value == len(record.state["history"])
    assert record.outcome == "Promoted", record.state["history"]
    assert registry.resolve_version(store, "toy-model", "champion") == cand
    actions = [h["action"] for h in record.state["history"]]
    # Guarantees, not a count of intervals: on a slow machine an interval may hold for want of samples.
    assert actions[-1] == "promote" and "step_up" in actions and set(actions[:-1]) <= {"step_up", "hold"}, actions
    assert record.stable_failed_requests == 0
    assert store.exists(record.record_uri[len(store.uri) + 1:])


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
    history = record.state["history"]
    assert record.outcome == "RolledBack", history
    assert len(history) == FAST.threshold  # rolled back within `threshold` intervals
    assert all(any(c["name"] in failing and c["passed"] is not True for c in h["checks"]) for h in history)
    assert registry.resolve_version(store, "toy-model", "champion") == stable  # champion unchanged
    assert record.stable_failed_requests == 0  # stable never interrupted
