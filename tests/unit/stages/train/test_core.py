"""Training: deterministic bytes, resume after a kill, Katib metric lines, typed parameters."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import yaml

from components.stages.train.entrypoint import run_training
from components.tracking.runs import read_run
from tests.support.training_data import ingest_corpus, small_config

METRIC_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z epoch=\d+ accuracy=[\d.]+ loss=[\d.]+ "
                         r"macro_f1=[\d.]+ train_loss=[\d.]+$")


def test_same_inputs_give_the_same_model_bytes_and_metric_lines(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    lines: list[str] = []
    a = run_training(file_store, "toy", version, small_config(), "run-a", emit=lines.append, progress=False)
    b = run_training(file_store, "toy", version, small_config(), "run-b", emit=lambda _l: None, progress=False)
    assert a["sha256"] == b["sha256"] and a["metrics"] == b["metrics"] and a["run_key"] == b["run_key"]
    assert a["metrics"]["test"]["accuracy"] > 0.8
    assert len(lines) == len(a["history"]) and all(METRIC_LINE.match(line) for line in lines)
    c = run_training(file_store, "toy", version, small_config(seed=99), "run-c", emit=lambda _l: None,
                     progress=False)
    assert c["sha256"]["weights.pt"] != a["sha256"]["weights.pt"] and c["run_key"] != a["run_key"]

    record = read_run(file_store, "run-a")
    for key in ("params", "history", "dataset", "code_version", "run_key", "artifacts", "duration_s",
                "peak_rss_mib", "device"):
        assert key in record
    assert record["dataset"] == {"name": "toy", "version": version} and record["device"] == "cpu"


def test_cnn_family_trains(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(family="cnn", channels=8, epochs=2), "cnn-1",
                          emit=lambda _l: None, progress=False)
    assert record["params"]["train"]["family"] == "cnn" and record["metrics"]["test"]["accuracy"] > 0.6


def test_a_killed_training_resumes_from_its_checkpoint(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    config = tmp_path / "config.yaml"
    cfg = small_config(epochs=5, patience=5, checkpoint_every_s=0)
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    cmd = [sys.executable, "-m", "components.stages.train.entrypoint", "--store", file_store.uri, "--dataset", "toy",
           "--version", version, "--config", str(config)]

    proc = subprocess.Popen([*cmd, "--run-id", "killed"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if " epoch=2 " in line:
            os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown: only the checkpoint survives
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert file_store.exists("runs/killed/checkpoint.pt") and not file_store.exists("runs/killed.json")

    resumed = subprocess.run([*cmd, "--run-id", "killed"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    epochs = [int(m) for m in re.findall(r" epoch=(\d+) ", resumed.stdout)]
    assert epochs and epochs[0] >= 3  # it did not start again from epoch 1
    straight = subprocess.run([*cmd, "--run-id", "straight"], capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    killed, full = read_run(file_store, "killed"), read_run(file_store, "straight")
    assert killed["resumed_from_epoch"] >= 2 and full["resumed_from_epoch"] is None
    assert killed["sha256"] == full["sha256"]  # resuming changes nothing about the result


def test_typed_parameters_are_validated_before_work(tmp_path, file_store):
    run = lambda *extra: subprocess.run([sys.executable, "-m", "components.stages.train.entrypoint", "--store",  # noqa: E731
                                         file_store.uri, "--dataset", "toy", *extra], capture_output=True, text=True)
    bad_type = run("--set", "lr=fast")
    assert bad_type.returncode == 3 and "lr" in bad_type.stderr and "valid number" in bad_type.stderr
    unknown = run("--set", "learning_rate=0.1")
    assert unknown.returncode == 3 and "train has no field 'learning_rate'" in unknown.stderr
