"""The monitor executor on real inference logs written by the predictor's logger: the window's
verdict, the CLI, what the log keeps of text, retention."""

from __future__ import annotations

import datetime as dt

import pytest

from components.stages.monitor.config import MonitorConfig, TriggerPolicy
from components.stages.monitor.trigger import history
from components.stages.split.config import SplitConfig


def _log(store, loaded, texts, at: dt.datetime, request_prefix: str):
    """Score and log `texts` as the predictor does (its InferenceLogger, its scoring path)."""
    from components.stages.serve.logging_sink import InferenceLogger

    logger = InferenceLogger(store, "toy-model", loaded.card["version"], "stable", sample_rate=1.0)
    probs = loaded.predict_proba(texts)
    labels = [loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
    for i, (text, label, conf) in enumerate(zip(texts, labels, probs.max(axis=1), strict=True)):
        logger.log(f"{request_prefix}-{i}", [text], [label], [float(conf)])
    logger.close()
    return labels


def test_monitor_window_on_logged_predictions(own_two_versions):
    from components.stages.monitor.executor import monitor_window, write_feedback
    from components.stages.registry.store import load
    from tests.support.training_data import corpus

    store, *_ = own_two_versions  # a copy, so the logs do not leak into other tests
    loaded = load(store, "toy-model", "champion")
    cfg = MonitorConfig(reference_rows=1000, trigger=TriggerPolicy(min_samples=300), min_labelled=100,
                        report_rows=500)
    split = SplitConfig()
    now = dt.datetime.now(dt.UTC)

    verdict, page = monitor_window(store, "toy-model", cfg, split, now=now)
    assert verdict["status"] == "insufficient_data" and "0 logged rows" in verdict["reason"]

    same = [r["text"] for r in corpus(600, seed=5)]
    _log(store, loaded, same, now, "same")
    verdict, page = monitor_window(store, "toy-model", cfg, split, now=dt.datetime.now(dt.UTC))
    assert verdict["status"] == "judged" and verdict["window"]["rows"] == 600
    assert verdict["signals"]["input_drift"] is False, verdict["input"]
    assert "<html" in page.lower() and "Monitoring: toy-model" in page

    shifted_rows = corpus(600, seed=9)
    shifted = [f"URGENT!!! {r['text'].upper()} CALL 0800-{i:06d} http://x.example/{i}" for i, r in
               enumerate(shifted_rows)]
    later = dt.datetime.now(dt.UTC)
    predicted = _log(store, loaded, shifted, later, "shifted")
    # delayed labels arrive: the opposite of what was predicted for every shifted request
    flipped = ["ham" if p == "spam" else "spam" for p in predicted]
    write_feedback(store, "toy-model", [f"shifted-{i}" for i in range(len(shifted))], flipped, "batch-1")
    cfg_recent = cfg.model_copy(update={"window_hours": (dt.datetime.now(dt.UTC) - later).total_seconds() / 3600
                                        + 1e-4})
    verdict, _ = monitor_window(store, "toy-model", cfg_recent, split, now=dt.datetime.now(dt.UTC), html_report=False)
    assert verdict["window"]["rows"] == 600  # only the shifted batch is inside this window
    assert verdict["signals"]["input_drift"] is True
    drifted = {k for k, c in verdict["input"]["columns"].items() if c["drifted"]}
    assert {"upper_share", "digit_share", "url_count", "oov_rate"} <= drifted
    assert verdict["accuracy"]["labelled"] == 600 and verdict["accuracy"]["live_accuracy"] == 0.0
    assert verdict["signals"]["accuracy_drop"] is True


def test_conveyor_monitor_cli_records_a_decision(own_two_versions, tmp_path, capsys):
    import json

    import yaml

    from pipelines.cli import main

    store, *_ = own_two_versions
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump({"model_name": "toy-model", "monitor": {"reference_rows": 1000}}))
    assert main(["monitor", "--store", store.uri, "--config", str(config), "--html", str(tmp_path / "m.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "insufficient_data" and out["action"] == "insufficient_data"
    assert history(store, "toy-model")[-1]["action"] == "insufficient_data"
    assert "insufficient_data" in (tmp_path / "m.html").read_text()


PERSONAL = ["Hi, mail me at jane.doe@example.com or call +1 (415) 555-2671 about the free prize",
            "Our team meets at 10:30; reach bob@example.org, 020 7946 0958, server 192.168.1.20"]


def _logged_rows(store, model: str):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.common.layout import inference_log_prefix

    keys = [k for k in store.list(inference_log_prefix(model)) if k.endswith(".parquet")]
    return pa.concat_tables([pq.read_table(io.BytesIO(store.read_bytes(k))) for k in keys]).to_pylist()


@pytest.mark.parametrize("mode", ["redacted", "hashed", "none", "raw"])
def test_the_inference_log_keeps_text_as_log_text_says(file_store, mode):
    from components.stages.serve.logging_sink import InferenceLogger

    logger = InferenceLogger(file_store, "pii-model", "v1", "stable", text_mode=mode)
    logger.log("r-1", PERSONAL, ["spam", "ham"], [0.9, 0.8])
    logger.close()
    # the writer may put the two rows in one file or two: compare them in the order logged
    rows = sorted(_logged_rows(file_store, "pii-model"), key=lambda r: r["confidence"], reverse=True)
    assert [r["text_mode"] for r in rows] == [mode, mode]
    texts = [r["text"] for r in rows]
    if mode == "raw":
        assert texts == PERSONAL
        return
    stored = "".join(t or "" for t in texts)
    for secret in ("jane.doe@example.com", "bob@example.org", "555-2671", "7946 0958", "192.168.1.20"):
        assert secret not in stored
    if mode == "redacted":
        assert texts[0] == "Hi, mail me at <EMAIL> or call <PHONE> about the free prize"
    elif mode == "hashed":
        assert all(t.startswith("sha256:") for t in texts)
    else:
        assert texts == [None, None]


def test_input_drift_is_not_judged_without_text_and_the_other_signals_are(own_two_versions):
    from components.stages.monitor.executor import monitor_window
    from components.stages.registry.store import load
    from components.stages.serve.logging_sink import InferenceLogger
    from tests.support.training_data import corpus

    store, *_ = own_two_versions
    loaded = load(store, "toy-model", "champion")
    texts = [r["text"] for r in corpus(400, seed=3)]
    logger = InferenceLogger(store, "toy-model", loaded.card["version"], "stable", text_mode="hashed")
    probs = loaded.predict_proba(texts)
    for i, (row, conf) in enumerate(zip(probs.argmax(axis=1), probs.max(axis=1), strict=True)):
        logger.log(f"h-{i}", [texts[i]], [loaded.featurizer.labels[row]], [float(conf)])
    logger.close()
    cfg = MonitorConfig(reference_rows=1000, trigger=TriggerPolicy(min_samples=300), report_rows=500)
    verdict, _ = monitor_window(store, "toy-model", cfg, SplitConfig(), now=dt.datetime.now(dt.UTC),
                                html_report=False)
    assert verdict["status"] == "judged"
    assert verdict["signals"]["input_drift"] is None and "input drift not judged" in verdict["input"]["reason"]
    assert verdict["signals"]["prediction_drift"] is False
    assert verdict["input"]["text"] == {"redacted": False, "rows_with_text": 0, "rows_without_text": 400}


def test_retention_deletes_old_days_and_audits_it(file_store):
    """A clock we control: rows of days that ended before now - retention_days go, the rest stay."""
    from components.common import audit
    from components.common.layout import inference_log_key
    from components.stages.monitor.executor import expire_logs

    for version, day in (("v1", "2026-10-01"), ("v1", "2026-11-05"), ("v2", "2026-11-06"), ("v2", "2026-12-01")):
        file_store.write_bytes(inference_log_key("ret-model", version, day, "part"), b"rows")
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    result = expire_logs(file_store, "ret-model", 30, now)  # cutoff 2026-11-07 12:00
    assert result["deleted_days"] == ["v1/2026-10-01", "v1/2026-11-05", "v2/2026-11-06"]
    assert file_store.list("inference-logs/ret-model/") == ["inference-logs/ret-model/v2/2026-12-01/part.parquet"]
    [entry] = [e for e in audit.read_entries(file_store) if e["event"] == "inference_log_expired"]
    assert entry["subject"] == {"model": "ret-model"} and entry["details"]["deleted_files"] == 3
    assert expire_logs(file_store, "ret-model", 30, now)["deleted_files"] == 0  # nothing more, no new entry
    assert len([e for e in audit.read_entries(file_store) if e["event"] == "inference_log_expired"]) == 1
    assert expire_logs(file_store, "ret-model", None, now + dt.timedelta(days=400))["deleted_files"] == 0


def test_a_batch_that_cannot_be_built_is_counted_and_later_rows_are_still_logged(file_store, monkeypatch):
    from components.stages.serve import logging_sink

    real = logging_sink.for_log

    def failing(text, mode):
        if text == "bad":
            raise ValueError("cannot redact")
        return real(text, mode)

    monkeypatch.setattr(logging_sink, "for_log", failing)
    logger = logging_sink.InferenceLogger(file_store, "fail-model", "v1", "stable", batch_rows=1)
    logger.log("r-1", ["bad"], ["spam"], [0.9])
    import time

    deadline = time.monotonic() + 10
    while logger.write_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    logger.log("r-2", ["a good text from jane@example.com"], ["ham"], [0.8])
    logger.close()
    assert logger.write_errors == 1 and logger.written == 1
    [row] = _logged_rows(file_store, "fail-model")
    assert row["text"] == "a good text from <EMAIL>"
