"""Long work shows progress (a search per trial, a large ingest by rows and bytes), live on a
terminal and as plain lines elsewhere; CONVEYOR_LOG_FORMAT=json makes steps and the model server
write one JSON object per line."""

from __future__ import annotations

import io
import json
import os

import pytest

from components.common.errors import ConfigError
from components.common.logs import PROGRESS_FILE_ENV, StepLog, log_format
from components.stages.search.progress import SearchProgress
from components.stages.search.spec import parse_spec


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_search_progress_gives_the_best_so_far_and_an_eta_from_the_budget():
    spec = parse_spec({"parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1}],
                       "max_trials": 6, "parallel_trials": 2, "timeout_s": 100})
    lines, clock = io.StringIO(), Clock()
    progress = SearchProgress(spec, StepLog("search", "r1", stream=lines, fmt="json"), clock=clock)
    progress.start()
    progress.trial_started(0, {"lr": 0.01})
    progress.trial_started(1, {"lr": 0.05})
    assert progress.eta_s() is None  # nothing finished: no estimate yet
    clock.now += 20
    progress.trial_finished(0, "succeeded", 0.9, 3, 20.0, {"lr": 0.01})
    # 5 trials left, 2 at a time, 20 s each: 3 rounds = 60 s (inside the 80 s left of the budget)
    assert progress.eta_s() == 60
    clock.now += 10
    progress.trial_finished(1, "pruned", 0.7, 1, 10.0, {"lr": 0.05})
    assert progress.best == (0.9, 0)  # a pruned trial is never the best
    clock.now += 60
    assert progress.eta_s() == 10  # 2 rounds of 15 s would pass the budget: 10 s are left
    events = _events(lines)
    assert [e["fields"]["event"] for e in events] == ["search_started", "trial_started", "trial_started",
                                                      "trial_finished", "trial_finished"]
    assert events[3]["message"].startswith("trial 0 finished: accuracy 0.9 in 20 s; 1/6 done; best accuracy 0.9")
    assert "ETA 60 s" in events[3]["message"]
    assert events[4]["message"].startswith("trial 1 pruned at epoch 1")
    assert events[4]["fields"]["best_value"] == 0.9 and events[4]["fields"]["done"] == 2


def test_katib_counts_give_one_line_per_change():
    spec = parse_spec({"parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1}],
                       "max_trials": 4, "parallel_trials": 2})
    lines, clock = io.StringIO(), Clock()
    progress = SearchProgress(spec, StepLog("search", stream=lines, fmt="text"), clock=clock)
    progress.counts(2, 0, 0, 0, None, None)
    progress.counts(2, 0, 0, 0, None, None)  # the same counts again (another watch event): no line
    clock.now += 30
    progress.counts(2, 1, 1, 0, 0.93, "exp-abc")
    text = lines.getvalue().splitlines()
    assert len(text) == 2
    assert text[1].startswith("trials: 2 running, 1 succeeded, 1 early-stopped, 0 failed; 2/4 done; "
                              "best accuracy 0.93 (trial exp-abc)")


def test_ingest_progress_reports_rows_per_second_and_bytes_of_the_total(tmp_path):
    from components.common.storage import FileStore
    from components.stages.ingest.executor import IngestProgress
    from components.stages.ingest.readers import SourceFile

    (tmp_path / "a.csv").write_bytes(b"x" * 3_000_000)
    store = FileStore("/")
    files = [SourceFile(store, str(tmp_path / "a.csv").lstrip("/"), "file:///a.csv", "a", named=True)]
    lines, clock = io.StringIO(), Clock()
    progress = IngestProgress(StepLog("ingest", stream=lines, fmt="json"), files, interval_s=5, clock=clock)
    clock.now += 1
    progress.update(1000, 100_000, 0)  # a small input that ends soon: nothing printed
    assert lines.getvalue() == ""
    clock.now += 9
    progress.update(200_000, 1_500_000, 0)
    (event,) = _events(lines)
    assert event["message"] == "ingest: 200,000 rows read (20,000 rows/s), 1.5 of 3.0 MB, 0/1 files"
    assert event["fields"]["bytes_total"] == 3_000_000 and event["fields"]["event"] == "ingest_progress"


def test_a_large_ingest_reports_progress_through_the_reader(tmp_path):
    """The reader's byte position moves inside one big file (no jump from 0 to the whole file)."""
    from components.stages.ingest.config import SourceSettings
    from components.stages.ingest.readers import SourceReader, discover

    rows = "".join(f"row number {i} with some words,ham\n" for i in range(600_000))
    (tmp_path / "big.csv").write_text("text,label\n" + rows)
    settings = SourceSettings()
    reader = SourceReader(settings, batch_rows=10_000)
    positions = []
    for _batch in reader.read(discover([str(tmp_path / "big.csv")], settings)):
        positions.append(reader.bytes_read)
    size = (tmp_path / "big.csv").stat().st_size
    assert reader.bytes_read == size and reader.files_done == 1
    assert any(0 < p < size for p in positions)


def test_step_log_formats(monkeypatch):
    text, js = io.StringIO(), io.StringIO()
    StepLog("train", "run-1", stream=text, fmt="text")("trained", accuracy=0.9)
    StepLog("train", "run-1", stream=js, fmt="json")("trained", accuracy=0.9)
    assert text.getvalue() == "trained\n"
    (record,) = _events(js)
    assert {k: record[k] for k in ("level", "step", "run_id", "message")} == {
        "level": "info", "step": "train", "run_id": "run-1", "message": "trained"}
    assert record["fields"] == {"accuracy": 0.9} and record["time"].endswith("Z")
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"\$CONVEYOR_LOG_FORMAT='xml': expected one of text, json"):
        log_format()


def test_progress_display_plain_lines_off_a_terminal_and_a_live_bar_on_one(tmp_path, monkeypatch):
    from pipelines.progress_display import ProgressDisplay

    spec = parse_spec({"parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1}],
                       "max_trials": 2, "parallel_trials": 1})
    for live in (False, True):
        out = io.StringIO()
        path = tmp_path / f"progress-{live}.jsonl"
        with ProgressDisplay(path, stream=out, live=live) as display:
            assert os.environ[PROGRESS_FILE_ENV] == str(path)  # what the kfp.local tasks inherit
            display.say("[1] training pipeline")
            progress = SearchProgress(spec, StepLog("search", stream=io.StringIO()))  # as a task writes it
            progress.start()
            progress.trial_started(0, {"lr": 0.01})
            progress.trial_finished(0, "succeeded", 0.91, 3, 2.0)
        assert PROGRESS_FILE_ENV not in os.environ
        shown = out.getvalue()
        assert "[1] training pipeline" in shown and "trial 0 finished: accuracy 0.91" in shown
        if not live:
            assert shown.splitlines()[0] == "[1] training pipeline"
            assert "trial 0 started" in shown  # one plain line per event


def test_the_model_server_logs_one_json_object_per_line(monkeypatch, two_versions):
    from components.stages.serve.infra import ServerProcess, http_json

    store, *_ = two_versions
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    with ServerProcess("toy-model@champion", store.uri, name="toy", extra=["--access-log"]) as server:
        code, _ = http_json(f"{server.url}/v1/models/toy:predict", {"instances": ["free cash now"]})
        assert code == 200
        bad, _ = http_json(f"{server.url}/v1/models/toy:predict", {"instances": "not a list"})
        assert bad == 400
        server.stop()
        output = server.output()
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"time", "level", "step", "message"} <= set(r) and r["step"] == "serve" for r in records)
    assert any("POST /v1/models/toy:predict" in r["message"] for r in records)  # the access log, as JSON
    # and KServe's per-request timings, whose middleware runs only when they are logged
    assert any(r["message"].startswith("kserve.io.") for r in records)
