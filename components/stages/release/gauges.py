"""A release's state as Prometheus gauges, pushed to a Pushgateway after every analysis interval
(`rollout.pushgateway_url`): what the Grafana dashboard's release row and any alert on a stuck
rollout read. One group per model (job conveyor-rollout), so each push replaces the last."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from components.stages.release.analysis import CanaryState

PHASES = ("Progressing", "Paused", "Promoted", "RolledBack")
JOB = "conveyor-rollout"


def rollout_metrics(model: str, stable: str, candidate: str, state: CanaryState) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = {"model": model, "stable": stable, "candidate": candidate, "strategy": state.strategy}

    def gauge(name: str, doc: str, value: float, **extra: str) -> None:
        g = Gauge(name, doc, [*labels, *extra], registry=registry)
        g.labels(**labels, **extra).set(value)

    gauge("conveyor_rollout_weight_percent", "Share of traffic the candidate receives", state.weight)
    # one series per phase, 1 for the current one: a state timeline in Grafana
    phase_gauge = Gauge("conveyor_rollout_phase", "1 for the rollout's current phase", [*labels, "phase"],
                        registry=registry)
    for phase in PHASES:
        phase_gauge.labels(**labels, phase=phase).set(float(state.phase == phase))
    gauge("conveyor_rollout_failed_checks", "Failed analysis intervals so far (rollback at the threshold)",
          state.failed)
    gauge("conveyor_rollout_intervals", "Analysis intervals run so far", len(state.history))
    last = state.history[-1] if state.history else {}
    passed = all(c.get("passed") is True for c in last.get("checks", [])) if last else False
    gauge("conveyor_rollout_last_interval_passed", "1 when every check of the last interval passed", float(passed))
    gauge("conveyor_rollout_last_update_timestamp_seconds", "When the rollout last reported", time.time())
    if state.experiment:  # A/B: the sequential test's running state
        exp = state.experiment
        arms = Gauge("conveyor_experiment_samples", "Labelled answers per arm so far", [*labels, "arm"],
                     registry=registry)
        rates = Gauge("conveyor_experiment_outcome_rate", "Outcome rate (e.g. accuracy) per arm", [*labels, "arm"],
                      registry=registry)
        for arm in ("stable", "candidate"):
            n, successes = exp[arm]["n"], exp[arm]["successes"]
            arms.labels(**labels, arm=arm).set(n)
            if n:
                rates.labels(**labels, arm=arm).set(successes / n)
        gauge("conveyor_experiment_required_samples", "Planned labelled answers per arm", exp["required_per_arm"])
        gauge("conveyor_experiment_p_value", "Always-valid p-value of the mSPRT (running minimum)", exp["p_value"])
        if exp.get("effect") is not None:
            gauge("conveyor_experiment_effect", "Candidate minus stable outcome rate", exp["effect"])
            gauge("conveyor_experiment_effect_low", "Lower end of the always-valid confidence interval", exp["low"])
            gauge("conveyor_experiment_effect_high", "Upper end of the always-valid confidence interval", exp["high"])
    return registry


def publisher(url: str | None, model: str, versions: Callable[[], tuple[str, str]],
              log: Callable[[str], None] = print) -> Callable[[CanaryState], None] | None:
    """The observer run_rollout calls after each interval, or None without a Pushgateway; `versions`
    gives (stable, candidate) at that moment. A push that fails is logged and skipped: metrics must
    never stop a release."""
    if not url:
        return None

    def observe(state: CanaryState) -> None:
        stable, candidate = versions()
        try:
            push_to_gateway(url, job=JOB, grouping_key={"model": model}, timeout=5,
                            registry=rollout_metrics(model, stable, candidate, state))
        except OSError as exc:
            log(f"  rollout metrics not pushed to {url}: {exc}")

    return observe


DELIVERY_JOB = "conveyor-delivery"


def delivery_metrics(figures: dict) -> CollectorRegistry:
    """The four delivery figures (components.stages.release.delivery) as gauges; a figure with no data
    (no promotion, no failure in the window) is left out rather than shown as 0."""
    registry = CollectorRegistry()
    labels = {"model": figures.get("model") or "all", "window_days": f"{figures['window_days']:g}"}

    def gauge(name: str, doc: str, value: float | None, **extra: str) -> None:
        if value is None:
            return
        g = Gauge(name, doc, [*labels, *extra], registry=registry)
        g.labels(**labels, **extra).set(value)

    gauge("conveyor_delivery_deployment_frequency_per_day", "Production promotions per day in the window",
          figures["deployment_frequency_per_day"])
    lead = Gauge("conveyor_delivery_lead_time_hours", "Data version committed to its model in production (hours)",
                 [*labels, "quantile"], registry=registry)
    for q, key in (("0.5", "median"), ("0.9", "p90")):
        if figures["lead_time_hours"][key] is not None:
            lead.labels(**labels, quantile=q).set(figures["lead_time_hours"][key])
    gauge("conveyor_delivery_change_failure_rate", "Production releases that failed or were rolled back, "
          "over production releases", figures["change_failure_rate"])
    gauge("conveyor_delivery_time_to_restore_hours", "Median time from a failure or alert to production healthy",
          figures["time_to_restore_hours"]["median"])
    gauge("conveyor_delivery_last_update_timestamp_seconds", "When the figures were computed", time.time())
    return registry


def push_delivery(url: str, figures: dict) -> None:
    push_to_gateway(url, job=DELIVERY_JOB, grouping_key={"model": figures.get("model") or "all"}, timeout=5,
                    registry=delivery_metrics(figures))
