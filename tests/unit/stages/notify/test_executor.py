"""Alert & Stop: notifications posted to a real HTTP receiver on loopback, and the exit handler
under kfp.local reporting a failed run."""

import pytest

from components.stages.notify.core import SCHEMA
from components.stages.notify.executor import deliver, deliver_failure

BLESSING = {"decision": "NOT_BLESSED", "candidate": "c2", "champion": "c1",
            "reasons": ["accuracy 0.81 < 0.9", "slice spam: f1 dropped 0.12 > 0.05"]}


def test_not_blessed_is_posted_as_structured_json(receiver, monkeypatch):
    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    _server, url, got = receiver
    result = deliver("not_blessed", "run-7", "spam", BLESSING, {"webhook_url": url})
    assert result["delivery"] == {"delivered": True, "status": 204}
    body = got[0]["body"]
    assert got[0]["content_type"] == "application/json"
    assert (body["schema"], body["event"], body["severity"], body["run_id"]) == (SCHEMA, "not_blessed", "warning",
                                                                                "run-7")
    assert body["detail"]["reasons"] == BLESSING["reasons"] and "accuracy 0.81 < 0.9" in body["summary"]


def test_a_rolled_back_release_names_its_failing_checks(receiver, monkeypatch):
    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    _server, url, got = receiver
    deployment = {"candidate": "c2", "stable": "c1", "outcome": "RolledBack", "strategy": "bluegreen",
                  "state": {"history": [{"checks": [{"name": "success_rate", "passed": False},
                                                    {"name": "p99_latency_ms", "passed": True}]}]}}
    deliver("rolled_back", "run-8", "spam", deployment, {"webhook_url": url})
    body = got[0]["body"]
    assert body["detail"]["failing_checks"] == ["success_rate"] and body["detail"]["strategy"] == "bluegreen"
    assert "c1 stays" in body["summary"]


def test_a_broken_receiver_is_recorded_not_raised(receiver, monkeypatch):
    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    server, url, _got = receiver
    server.answer = 500
    result = deliver("not_blessed", "r", "spam", BLESSING, {"webhook_url": url})
    assert result["delivery"]["delivered"] is False and "500" in result["delivery"]["error"]
    result = deliver("not_blessed", "r", "spam", BLESSING, {"webhook_url": "http://127.0.0.1:9/hook"})
    assert "unreachable" in result["delivery"]["error"]
    skipped = deliver("not_blessed", "r", "spam", BLESSING, {"webhook_url": url, "events": ["failed"]})
    assert "not in notify.events" in skipped["delivery"]["skipped"]


def test_the_secret_url_wins_over_config(receiver, monkeypatch):
    _server, url, got = receiver
    monkeypatch.setenv("CONVEYOR_NOTIFY_URL", url)
    deliver("not_blessed", "r", "spam", BLESSING, {"webhook_url": "http://127.0.0.1:9/never"})
    assert len(got) == 1


def test_the_exit_handler_reports_a_failed_run_under_kfp_local(receiver, tmp_path, monkeypatch):
    from kfp import dsl, local

    from components.cluster.images import COMPONENT_IMAGE
    from components.stages.notify.component import exit_notify_op

    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    _server, url, got = receiver

    # no `from __future__ import annotations` in this file: KFP reads the real annotation types
    @dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
    def breaks(x: int) -> int:
        raise ValueError(f"step broke on {x}")

    @dsl.pipeline
    def guarded(x: int = 3):
        alert = exit_notify_op(run_id="run-9", model_name="spam", notify_config={"webhook_url": url})
        with dsl.ExitHandler(alert):
            breaks(x=x)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    with pytest.raises(RuntimeError):
        guarded()
    assert [g["body"]["event"] for g in got] == ["failed"]
    assert got[0]["body"]["severity"] == "critical" and got[0]["body"]["detail"]["state"] == "FAILED"


def test_a_successful_run_sends_nothing(receiver, monkeypatch):
    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    _server, url, got = receiver
    assert deliver_failure("r", "spam", "SUCCEEDED", None, {"webhook_url": url}) is None
    assert got == []
