"""Monitoring: the fast drift verdict equals Evidently's, the trigger's guardrails, and the monitor
executor on real inference logs written by the predictor's logger."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from components.stages.monitor.config import MonitorConfig, TriggerPolicy
from components.stages.monitor.drift import evidently_verdict, fast_verdict
from components.stages.monitor.trigger import decide, history, record
from components.stages.split.config import SplitConfig

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def _tables(n: int, shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = {"chars": rng.lognormal(6, 1, n), "digits": rng.beta(1, 20, n), "urls": rng.poisson(0.3, n).astype(float),
           "label": rng.choice(["ham", "spam"], n, p=[0.7, 0.3])}
    cur = {"chars": rng.lognormal(6 + shift, 1, n), "digits": rng.beta(1, 20 - 10 * shift, n),
           "urls": rng.poisson(0.3 + shift, n).astype(float),
           "label": rng.choice(["ham", "spam"], n, p=[0.7 - shift / 2, 0.3 + shift / 2])}
    kinds = {"chars": "numerical", "digits": "numerical", "urls": "numerical", "label": "categorical"}
    return ref, cur, kinds


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.4])
def test_fast_verdict_matches_evidently_column_by_column(shift):
    ref, cur, kinds = _tables(5000, shift)
    fast = fast_verdict(ref, cur, kinds)
    slow, _ = evidently_verdict(ref, cur, kinds)
    assert fast["dataset_drift"] == slow["dataset_drift"]
    assert fast["drifted_share"] == pytest.approx(slow["drifted_share"])
    for name in kinds:
        assert fast["columns"][name]["score"] == pytest.approx(slow["columns"][name]["score"], rel=1e-9, abs=1e-12)
        assert fast["columns"][name]["drifted"] == slow["columns"][name]["drifted"]
    # `urls` has <= 5 distinct values at no shift: Evidently (and we) use Jensen-Shannon there
    assert {c["method"] for c in fast["columns"].values()} <= {"wasserstein", "jensenshannon"}
    assert fast["dataset_drift"] == (shift >= 0.4)


def _verdict(drifted: bool | None):
    if drifted is None:
        return {"status": "insufficient_data", "reason": "12 rows", "signals": {}}
    return {"status": "judged", "signals": {"input_drift": drifted, "prediction_drift": False, "accuracy_drop": None}}


def _run(policy: TriggerPolicy, windows: list[bool | None], hours_apart: float = 1.0) -> list[str]:
    past: list[dict] = []
    for i, drifted in enumerate(windows):
        decision = decide(policy, _verdict(drifted), past, NOW + dt.timedelta(hours=i * hours_apart))
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
    decision = decide(policy, _verdict(True), [decide(policy, _verdict(True), [], NOW)], NOW + dt.timedelta(hours=1))
    assert any("cooldown: last retrain 1.0 h ago" in r for r in decision["reasons"])


def test_decisions_are_recorded_with_evidence(file_store):
    policy = TriggerPolicy()
    first = decide(policy, _verdict(True), [], NOW)
    record(file_store, "m", first)
    second = decide(policy, _verdict(True), history(file_store, "m"), NOW + dt.timedelta(hours=1))
    record(file_store, "m", second)
    kept = history(file_store, "m")
    assert [d["action"] for d in kept] == ["retrain", "wait"]
    assert kept[0]["signals"]["input_drift"] is True and kept[1]["reasons"]


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


class _KfpStandIn:
    """The few KFP client calls the submit step makes (no KFP API server runs here)."""

    def __init__(self):
        from types import SimpleNamespace as NS

        self.NS = NS
        self.runs = []

    def list_runs(self, page_size, sort_by):
        return self.NS(runs=[self.NS(display_name=r["name"], run_id=r["id"]) for r in self.runs])

    def get_pipeline_id(self, name):
        return "pid-1" if name == "conveyor-continuous-training" else None

    def list_pipeline_versions(self, pipeline_id, sort_by, page_size):
        return self.NS(pipeline_versions=[self.NS(pipeline_version_id="vid-3")])

    def get_experiment(self, experiment_name):
        raise ValueError("no such experiment")

    def create_experiment(self, name):
        return self.NS(experiment_id="eid-1")

    def run_pipeline(self, experiment_id, job_name, pipeline_id, version_id, params):
        self.runs.append({"name": job_name, "id": f"run-{len(self.runs)}", "params": params,
                          "ids": (experiment_id, pipeline_id, version_id)})
        return self.NS(run_id=self.runs[-1]["id"])


def test_submit_retraining_passes_new_data_and_champion_params_once(two_versions):
    from components.common.errors import ClusterError
    from components.stages.monitor.submit import submit_retraining
    from components.stages.registry.store import load_card

    store, *_ = two_versions
    client = _KfpStandIn()
    args = ("toy-model", ["s3://raw/new-batch/"], "http://kfp", "conveyor-continuous-training", "conveyor",
            {"train": {"lr": 0.5, "epochs": 1}, "best_trial": "keep"}, {"word_ngrams": 1})
    with pytest.raises(ClusterError, match="no retrain decision recorded"):
        submit_retraining(store, *args, client=client)
    decision = decide(TriggerPolicy(), _verdict(True), [], NOW)
    key = record(store, "toy-model", decision)
    try:
        first = submit_retraining(store, *args, client=client)
        again = submit_retraining(store, *args, client=client)  # a retried step adopts its run
        assert first == again == "run-0" and len(client.runs) == 1
        run = client.runs[0]
        assert run["ids"] == ("eid-1", "pid-1", "vid-3") and run["params"]["sources"] == ["s3://raw/new-batch/"]
        champion = load_card(store, "toy-model", "champion")["params"]
        assert run["params"]["config"]["train"]["lr"] == champion["train"]["lr"]  # the champion's configuration
        assert run["params"]["config"]["best_trial"] == "retrain"  # no search, so no trial to keep
        # each setting in one place: the features are the run's features_config, not a copy in config
        assert "features" not in run["params"]["config"]
        from components.stages.featurize.config import FeaturesConfig

        assert FeaturesConfig.model_validate(run["params"]["features_config"]) == \
            FeaturesConfig.model_validate(champion["features"])
        with pytest.raises(ClusterError, match="pipeline 'nope' is not registered"):
            submit_retraining(store, "toy-model", [], "http://kfp", "nope", "conveyor", {}, {},
                              client=_KfpStandIn())
    finally:
        store.delete(key[len(store.uri) + 1:])


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
