"""Delivery figures from the audit log: a synthetic history whose figures are known by hand, the
CLI on a real log, and the gauges the dashboard's Delivery row reads."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from components.common import audit
from components.stages.release.delivery import delivery_figures, parse_window
from pipelines.cli import main as conveyor

NOW = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)


def _history() -> list[dict]:
    entries: list[dict] = []

    def add(when: str, event: str, subject: dict, **details):
        entries.append({"seq": len(entries) + 1, "time": when, "event": event, "subject": subject,
                        "details": details, "actor": {"name": "test"}})

    def commit(when, version):
        add(when, "dataset_version_committed", {"dataset": "mail", "version": version})

    def register(when, version, data, model="spam"):
        add(when, "model_registered", {"model": model, "version": version}, dataset="mail", dataset_version=data)

    def finished(when, version, outcome, stable, started, model="spam", env="production"):
        add(when, "release_finished", {"model": model, "version": version, "env": env, "strategy": "canary"},
            outcome=outcome, stable=stable, started_at=started, finished_at=when)

    # before the window: not counted
    commit("2026-10-31T00:00:00Z", "d0")
    register("2026-10-31T01:00:00Z", "v0", "d0")
    finished("2026-11-01T00:00:00Z", "v0", "Promoted", None, "2026-11-01T00:00:00Z")
    # v1: first deployment, 6 h after its data
    commit("2026-12-01T00:00:00Z", "d1")
    register("2026-12-01T02:00:00Z", "v1", "d1")
    finished("2026-12-01T06:00:00Z", "v1", "Promoted", "v0", "2026-12-01T05:00:00Z")
    # v2: rolled back by the analysis, 2 h after it started
    commit("2026-12-05T00:00:00Z", "d2")
    register("2026-12-05T02:00:00Z", "v2", "d2")
    finished("2026-12-05T12:00:00Z", "v2", "RolledBack", "v1", "2026-12-05T10:00:00Z")
    # v3: promoted 24 h after its data, production moved back to v1 3 h later
    commit("2026-12-10T00:00:00Z", "d3")
    register("2026-12-10T02:00:00Z", "v3", "d3")
    finished("2026-12-11T00:00:00Z", "v3", "Promoted", "v1", "2026-12-10T23:00:00Z")
    add("2026-12-11T03:00:00Z", "alias_moved", {"model": "spam", "alias": "production", "version": "v1"},
        **{"from": "v3"})
    # drift fires; the retrained v4 reaches production 9 h later, 8 h after its data
    add("2026-12-20T00:00:00Z", "retrain_decision", {"model": "spam"}, outcome="retrain", drifted=True)
    commit("2026-12-20T01:00:00Z", "d4")
    register("2026-12-20T03:00:00Z", "v4", "d4")
    finished("2026-12-20T09:00:00Z", "v4", "Promoted", "v1", "2026-12-20T08:00:00Z")
    # staging and another model: not production releases of this model
    finished("2026-12-21T00:00:00Z", "v5", "Promoted", "v4", "2026-12-20T23:00:00Z", env="staging")
    register("2026-12-22T00:00:00Z", "w1", "d4", model="other")
    finished("2026-12-22T01:00:00Z", "w1", "RolledBack", None, "2026-12-22T00:30:00Z", model="other")
    return entries


def test_the_four_figures_of_a_known_history():
    figures = delivery_figures(_history(), model="spam", window=dt.timedelta(days=30), now=NOW)
    assert figures["production_promotions"] == 3                       # v1, v3, v4
    assert figures["deployment_frequency_per_day"] == pytest.approx(3 / 30, abs=1e-4)
    assert figures["lead_time_hours"] == {"median": 8.0, "p90": 24.0, "count": 3}  # 6, 24, 8 h
    assert figures["production_releases"] == 4                         # v1, v2, v3, v4
    assert figures["change_failure_rate"] == 0.5                       # v2 rolled back, v3 moved back
    assert [f["version"] for f in figures["failed_releases"]] == ["v2", "v3"]
    assert figures["time_to_restore_hours"] == {"median": 3.0, "count": 3, "alerts": 1}  # 2, 3, 9 h


def test_the_window_and_the_model_select_what_counts():
    short = delivery_figures(_history(), model="spam", window=dt.timedelta(days=5), now=NOW)
    assert short["production_promotions"] == 0 and short["change_failure_rate"] is None
    assert short["lead_time_hours"]["median"] is None
    every = delivery_figures(_history(), window=dt.timedelta(days=30), now=NOW)
    assert every["production_releases"] == 5 and every["change_failure_rate"] == pytest.approx(3 / 5)
    assert parse_window("12h") == dt.timedelta(hours=12)
    for bad in ("soon", "-3d", "0"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


def test_report_delivery_reads_a_real_audit_log_and_pushes_the_gauges(file_store, capsys):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.prometheus_proc import pushgateway

    audit.append(file_store, "dataset_version_committed", {"dataset": "mail", "version": "d1"})
    audit.append(file_store, "model_registered", {"model": "spam", "version": "v1"},
                 {"dataset": "mail", "dataset_version": "d1"})
    audit.append(file_store, "release_finished", {"model": "spam", "version": "v1", "env": "production"},
                 {"outcome": "Promoted", "stable": None})
    assert conveyor(["report", "delivery", "--model", "spam", "--store", file_store.uri]) == 0
    out = capsys.readouterr().out
    for figure in ("deployment frequency", "lead time for changes", "change failure rate", "time to restore"):
        assert figure in out
    assert "(1 production promotions)" in out and "0% (0 of 1 production releases)" in out
    with pushgateway() as gateway:
        assert conveyor(["report", "delivery", "--model", "spam", "--json", "--push", gateway.url,
                         "--store", file_store.uri]) == 0
        figures = json.loads(capsys.readouterr().out)
        with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as resp:
            pushed = {s.name: s for f in text_string_to_metric_families(resp.read().decode()) for s in f.samples
                      if s.labels.get("model") == "spam"}
    assert pushed["conveyor_delivery_change_failure_rate"].value == 0.0
    assert pushed["conveyor_delivery_deployment_frequency_per_day"].value == figures["deployment_frequency_per_day"]
    assert conveyor(["report", "delivery", "--window", "soon", "--store", file_store.uri]) == 2
    assert "--window" in capsys.readouterr().err
