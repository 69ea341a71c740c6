"""The retrain trigger: debounce, cooldown and cap; every decision recorded with its evidence."""

from __future__ import annotations

import datetime as dt

from components.stages.monitor.config import TriggerPolicy
from components.stages.monitor.trigger import decide, history, record
from tests.support.monitoring import NOW, verdict


def _run(policy: TriggerPolicy, windows: list[bool | None], hours_apart: float = 1.0) -> list[str]:
    past: list[dict] = []
    for i, drifted in enumerate(windows):
        decision = decide(policy, verdict(drifted), past, NOW + dt.timedelta(hours=i * hours_apart))
        past.append(decision)
    return [d["action"] for d in past]


def test_trigger_guardrails():
    policy = TriggerPolicy(consecutive_windows=1, cooldown_hours=6, max_retrains_per_day=3)
    assert _run(policy, [False, False]) == ["wait", "wait"]  # no drift: no retrain
    assert _run(policy, [None]) == ["insufficient_data"]  # below min_samples: no false alarm
    assert _run(policy, [True, True]) == ["retrain", "wait"]  # two drifted windows in the cooldown: one retrain
    assert _run(policy, [True, True], hours_apart=7) == ["retrain", "retrain"]  # after the cooldown: again
    debounce = TriggerPolicy(consecutive_windows=2, cooldown_hours=0)
    assert _run(debounce, [True, False, True, None, True]) == ["wait", "wait", "wait", "insufficient_data",
                                                               "retrain"]
    capped = TriggerPolicy(consecutive_windows=1, cooldown_hours=0, max_retrains_per_day=2)
    assert _run(capped, [True, True, True]) == ["retrain", "retrain", "wait"]
    only_accuracy = TriggerPolicy(signals=["accuracy_drop"], cooldown_hours=0)
    assert _run(only_accuracy, [True]) == ["wait"]  # input drift alone is not a counted signal here
    decision = decide(policy, verdict(True), [decide(policy, verdict(True), [], NOW)], NOW + dt.timedelta(hours=1))
    assert any("cooldown: last retrain 1.0 h ago" in r for r in decision["reasons"])


def test_decisions_are_recorded_with_evidence(file_store):
    policy = TriggerPolicy()
    first = decide(policy, verdict(True), [], NOW)
    record(file_store, "m", first)
    second = decide(policy, verdict(True), history(file_store, "m"), NOW + dt.timedelta(hours=1))
    record(file_store, "m", second)
    kept = history(file_store, "m")
    assert [d["action"] for d in kept] == ["retrain", "wait"]
    assert kept[0]["signals"]["input_drift"] is True and kept[1]["reasons"]
