"""Canary analysis: the checks' statistics against their definitions, and the state machine's Flagger semantics."""

from __future__ import annotations

import pytest

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
from tests.support.canary import FAST


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
