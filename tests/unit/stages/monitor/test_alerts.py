"""Alerting rules checked and unit-tested by Prometheus' own promtool, the monitor's verdict pushed
to a real Pushgateway, and the chart's alerts routed by a real Alertmanager to webhooks on loopback."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
import yaml

from components.stages.monitor.alerts import prometheus_rule, push, rule_groups
from components.stages.monitor.config import MonitorConfig
from components.stages.release.config import CanaryConfig
from tests.support.paths import ROOT
from tests.support.prometheus_proc import binary

PROMTOOL = binary("promtool")
PUSHGATEWAY = binary("prometheus-pushgateway")
ALERTMANAGER = binary("prometheus-alertmanager")
needs = pytest.mark.skipif(PROMTOOL is None, reason="run `make prometheus` first")


@needs
def test_rules_pass_promtool_and_fire_on_the_right_series(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups("spam", MonitorConfig(), CanaryConfig())}))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    # promtool's rule unit tests: synthetic series in, expected alerts out (Prometheus' own engine)
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            # 3 of 100 requests a minute fail on v2 (3% > the 1% budget); v1 is clean
            {"series": 'conveyor_requests_total{model="spam",version="v2",code="500"}', "values": "0+3x20"},
            {"series": 'conveyor_requests_total{model="spam",version="v2",code="200"}', "values": "0+97x20"},
            {"series": 'conveyor_requests_total{model="spam",version="v1",code="200"}', "values": "0+100x20"},
            {"series": 'conveyor_drift_detected{model="spam",version="v1"}', "values": "0 0 1 1 1"},
            {"series": 'conveyor_live_accuracy_drop{model="spam",version="v1"}', "values": "0.01 0.01 0.2"},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "ConveyorHighErrorRate", "exp_alerts": []},  # not yet for 5m
            {"eval_time": "12m", "alertname": "ConveyorHighErrorRate", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "model": "spam", "version": "v2"},
                "exp_annotations": {"summary": "spam v2: more than 1.00% of requests fail"}}]},
            {"eval_time": "1m", "alertname": "ConveyorDriftDetected", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "ConveyorDriftDetected", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "model": "spam"},
                "exp_annotations": {"summary": "spam: the last monitoring window drifted from the training data"}}]},
            {"eval_time": "2m", "alertname": "ConveyorLiveAccuracyDrop", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "model": "spam"},
                "exp_annotations": {"summary": "spam: live accuracy fell more than 5% below its test accuracy"}}]},
        ]}]}
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_resource_wraps_the_same_groups():
    rule = prometheus_rule("spam", MonitorConfig(), CanaryConfig(), "team-a")
    assert rule["kind"] == "PrometheusRule" and rule["metadata"]["namespace"] == "team-a"
    assert rule["spec"]["groups"] == rule_groups("spam", MonitorConfig(), CanaryConfig())


@pytest.mark.skipif(PUSHGATEWAY is None, reason="run `make prometheus` first")
def test_verdict_is_pushed_to_a_real_pushgateway():
    from tests.support.prometheus_proc import pushgateway

    verdict = {"model": "spam", "version": "v1", "window": {"rows": 1234},
               "signals": {"input_drift": True, "prediction_drift": False},
               "input": {"drifted_share": 0.7}, "accuracy": {"drop": 0.08}}
    with pushgateway() as gateway:
        push(gateway.url, verdict, {"action": "retrain"})
        text = urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5).read().decode()
    assert 'conveyor_drift_detected{instance="",job="conveyor-monitor",model="spam",version="v1"} 1' in text
    assert 'conveyor_live_accuracy_drop{instance="",job="conveyor-monitor",model="spam",version="v1"} 0.08' in text
    assert 'conveyor_monitor_window_rows{instance="",job="conveyor-monitor",model="spam",version="v1"} 1234' in text


def _chart_alerting(tmp_path, hook: str, page: str) -> tuple[str, str]:
    """The chart's rendered Alertmanager config and PrometheusRule groups, as files."""
    import helm_python

    chart = helm_python.Chart.load(str(ROOT / "charts" / "conveyor"))
    values = {"alerting": {"alertmanager": {"enabled": True, "webhookUrl": hook, "criticalWebhookUrl": page,
                                            "groupWait": "1s", "groupInterval": "1s"}}}
    rendered = {}
    for template, text in chart.render(values, name="conveyor", namespace="team-a", is_install=True).items():
        for obj in yaml.safe_load_all(text) if template.endswith(".yaml") else ():
            if obj:
                rendered[obj["kind"], obj["metadata"]["name"]] = obj
    config = tmp_path / "alertmanager.yaml"
    config.write_text(rendered["Secret", "conveyor-alertmanager"]["stringData"]["alertmanager.yaml"])
    rules = tmp_path / "rules.yaml"
    groups = rendered["PrometheusRule", "conveyor-spam-classifier"]["spec"]["groups"]
    rules.write_text(yaml.safe_dump({"groups": groups}))
    return str(config), str(rules)


def _until(what: str, predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:g} s")


@pytest.mark.skipif(PUSHGATEWAY is None or ALERTMANAGER is None,
                    reason="run `make prometheus` first")
def test_chart_alerts_reach_the_webhooks_through_a_real_alertmanager(tmp_path, receiver):
    from tests.support.prometheus_proc import PrometheusProcess, alertmanager, pushgateway

    _server, url, got = receiver
    config, rules = _chart_alerting(tmp_path, url, url.replace("/hook", "/page"))
    check = subprocess.run([binary("amtool"), "check-config", config], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    verdict = {"model": "spam-classifier", "version": "v1", "window": {"rows": 900},
               "signals": {"input_drift": True}, "input": {"drifted_share": 0.6}}
    with pushgateway() as gateway, alertmanager(config) as manager, \
            PrometheusProcess([gateway.url.split("://")[1]], rule_files=[rules], alertmanager_url=manager.url):
        push(gateway.url, verdict, {"action": "retrain"})  # drift only: a warning, to the model's webhook
        drift = _until("the drift alert posted to the webhook", lambda: [
            g for g in got if g["path"] == "/hook" and g["body"]["status"] == "firing"])[0]["body"]
        assert drift["version"] == "4" and drift["receiver"] == "conveyor-webhook"
        assert [(a["labels"]["alertname"], a["labels"]["model"], a["labels"]["severity"]) for a in drift["alerts"]] \
            == [("ConveyorDriftDetected", "spam-classifier", "warning")]
        push(gateway.url, {**verdict, "accuracy": {"drop": 0.08}}, {"action": "retrain"})  # critical: the page
        page = _until("the accuracy alert posted to the critical webhook", lambda: [
            g for g in got if g["path"] == "/page"])[0]["body"]
        assert page["receiver"] == "conveyor-critical"
        assert [a["labels"]["alertname"] for a in page["alerts"]] == ["ConveyorLiveAccuracyDrop"]

        def inhibited():
            with urllib.request.urlopen(f"{manager.url}/api/v2/alerts?inhibited=true", timeout=5) as resp:
                return [a for a in json.loads(resp.read()) if a["status"]["inhibitedBy"]]

        # while the model pages, its warnings are held back (the chart's inhibit rule)
        muted = _until("the drift warning inhibited by the critical alert", inhibited)
        assert [a["labels"]["alertname"] for a in muted] == ["ConveyorDriftDetected"]
