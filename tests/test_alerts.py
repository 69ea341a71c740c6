"""Alerting rules checked and unit-tested by Prometheus' own promtool, and the monitor's verdict
pushed to a real Pushgateway."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.canary.config import CanaryConfig
from components.monitor.alerts import prometheus_rule, push, rule_groups
from components.monitor.config import MonitorConfig

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
PROMTOOL = str(BIN / "promtool") if (BIN / "promtool").exists() else shutil.which("promtool")
PUSHGATEWAY = str(BIN / "prometheus-pushgateway") if (BIN / "prometheus-pushgateway").exists() else None
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
    from components.serve.infra import free_port

    port = free_port()
    gateway = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        verdict = {"model": "spam", "version": "v1", "window": {"rows": 1234},
                   "signals": {"input_drift": True, "prediction_drift": False},
                   "input": {"drifted_share": 0.7}, "accuracy": {"drop": 0.08}}
        push(url, verdict, {"action": "retrain"})
        text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    finally:
        gateway.terminate()
        gateway.wait(10)
    assert 'conveyor_drift_detected{instance="",job="conveyor-monitor",model="spam",version="v1"} 1' in text
    assert 'conveyor_live_accuracy_drop{instance="",job="conveyor-monitor",model="spam",version="v1"} 0.08' in text
    assert 'conveyor_monitor_window_rows{instance="",job="conveyor-monitor",model="spam",version="v1"} 1234' in text
