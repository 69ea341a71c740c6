"""Prometheus alerting rules for a served model: error rate, p99 latency, inference-log loss (from
the predictor's /metrics) and drift / live accuracy / monitor staleness (pushed by the monitoring
step to a Pushgateway). Emitted as a plain rule file (promtool checks it) and as a
PrometheusRule for the Prometheus operator."""

from __future__ import annotations

import time
from typing import Any

from components.stages.monitor.config import MonitorConfig
from components.stages.release.config import CanaryConfig


def rule_groups(model: str, monitor: MonitorConfig, canary: CanaryConfig) -> list[dict[str, Any]]:
    sel = f'model="{model}"'
    error_budget = round(1 - canary.min_success_rate, 6)
    p99_s = canary.max_p99_latency_ms / 1000
    stale_s = int(monitor.window_hours * 2 * 3600)

    def alert(name, expr, for_, severity, summary):
        return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity, "model": model},
                "annotations": {"summary": summary}}

    return [{"name": f"conveyor-{model}", "rules": [
        alert("ConveyorHighErrorRate",
              f'sum by (model, version) (rate(conveyor_requests_total{{{sel},code=~"5.."}}[5m])) / '
              f"sum by (model, version) (rate(conveyor_requests_total{{{sel}}}[5m])) > {error_budget}",
              "5m", "critical", f"{model} {{{{ $labels.version }}}}: more than {error_budget:.2%} of requests fail"),
        alert("ConveyorHighLatencyP99",
              f"histogram_quantile(0.99, sum by (le, model, version) "
              f"(rate(conveyor_request_latency_seconds_bucket{{{sel}}}[5m]))) > {p99_s:g}",
              "10m", "warning",
              f"{model} {{{{ $labels.version }}}}: p99 latency above {canary.max_p99_latency_ms:g} ms"),
        alert("ConveyorInferenceLogLoss",
              f"sum by (model, version) (increase(conveyor_inference_log_dropped_total{{{sel}}}[15m]) + "
              f"increase(conveyor_inference_log_write_errors_total{{{sel}}}[15m])) > 0",
              "0m", "warning", f"{model}: logged predictions are being lost; monitoring sees less than served"),
        alert("ConveyorDriftDetected", f"max by (model) (conveyor_drift_detected{{{sel}}}) == 1", "0m", "warning",
              f"{model}: the last monitoring window drifted from the training data"),
        alert("ConveyorLiveAccuracyDrop",
              f"max by (model) (conveyor_live_accuracy_drop{{{sel}}}) > {monitor.max_accuracy_drop:g}", "0m",
              "critical", f"{model}: live accuracy fell more than {monitor.max_accuracy_drop:.0%} below its test "
                          "accuracy"),
        alert("ConveyorMonitorStale",
              f"time() - max by (model) (conveyor_monitor_last_run_timestamp_seconds{{{sel}}}) > {stale_s}",
              "0m", "warning", f"{model}: no monitoring verdict for two windows"),
    ]}]


def prometheus_rule(model: str, monitor: MonitorConfig, canary: CanaryConfig, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": f"conveyor-{model}", "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "conveyor"}},
            "spec": {"groups": rule_groups(model, monitor, canary)}}


def verdict_metrics(verdict: dict[str, Any], decision: dict[str, Any]):
    """The verdict as gauges in a fresh registry (for a Pushgateway)."""

    # lazy: only the metrics path needs it
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    labels = {"model": verdict["model"], "version": verdict["version"]}
    signals = verdict.get("signals", {})

    def gauge(name, doc, value):
        g = Gauge(name, doc, list(labels), registry=registry)
        g.labels(**labels).set(value)

    gauge("conveyor_monitor_last_run_timestamp_seconds", "When the monitor last judged a window", time.time())
    gauge("conveyor_monitor_window_rows", "Logged rows in the last window", verdict["window"]["rows"])
    gauge("conveyor_drift_detected", "1 when the last window drifted (input or prediction)",
          float(bool(signals.get("input_drift") or signals.get("prediction_drift"))))
    gauge("conveyor_input_drift_share", "Share of input features that drifted",
          verdict.get("input", {}).get("drifted_share", 0.0))
    drop = verdict.get("accuracy", {}).get("drop")
    if drop is not None:
        gauge("conveyor_live_accuracy_drop", "Test accuracy minus live accuracy on labelled requests", drop)
    gauge("conveyor_retrain_decision", "1 when the last decision was to retrain",
          float(decision.get("action") == "retrain"))
    return registry


def push(url: str, verdict: dict[str, Any], decision: dict[str, Any]) -> None:
    # lazy: only the metrics path needs it
    from prometheus_client import push_to_gateway

    push_to_gateway(url, job="conveyor-monitor", registry=verdict_metrics(verdict, decision),
                    grouping_key={"model": verdict["model"]}, timeout=10)
