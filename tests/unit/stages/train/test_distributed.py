"""Distributed training: torch DDP under torchrun (gloo on this CPU), byte-identical at a fixed
world size, resumable after a kill at that world size, one set of metric lines (rank 0's)."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
import torch

from components.common.errors import ConfigError
from components.stages.gate.config import GateConfig
from components.stages.train.config import apply_params
from components.stages.train.data import Bags
from components.stages.train.distributed import World, world_from_env
from components.stages.train.launch import entry_args, torchrun_command, train_processes
from tests.support.training_data import held_out_split, ingest_corpus, small_config


def test_the_world_comes_from_torchruns_environment_and_is_checked():
    assert world_from_env({}) == World() and not World().distributed and World().shard is None
    world = world_from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (world.rank, world.world_size, world.local_rank, world.backend) == (1, 2, 1, "gloo")
    assert world.shard == (1, 2) and not world.is_main and world.sparse_gradients
    assert not World(0, 2, 0, "nccl").sparse_gradients  # NCCL has no sparse all-reduce
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two': expected an integer"):
        world_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match=r"RANK=None: expected 0\.\.1"):
        world_from_env({"WORLD_SIZE": "2"})


def test_a_short_shard_is_padded_with_its_first_documents():
    bags = Bags(torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 2, 3, 6]), torch.tensor([0, 1, 0]))
    padded = bags.padded_to(5)
    assert padded.labels.tolist() == [0, 1, 0, 0, 1] and padded.offsets.tolist() == [0, 2, 3, 6, 8, 9]
    assert padded.ids.tolist() == [1, 2, 3, 4, 5, 6, 1, 2, 3]
    assert bags.padded_to(3) is bags
    with pytest.raises(ValueError, match="fewer rows than processes"):
        bags.padded_to(7)


def _kill_tree(pid: int) -> None:
    import psutil

    root = psutil.Process(pid)
    for process in [*root.children(recursive=True), root]:
        process.send_signal(signal.SIGKILL)


def _metric_epochs(lines: list[str]) -> list[int]:
    return [int(m) for line in lines for m in re.findall(r" epoch=(\d+) ", line)]


# make test-slow: ~50 s; in make test the TrainJob RBAC test trains over gloo and test_training resumes
@pytest.mark.slow
def test_two_gloo_processes_give_the_same_bytes_after_a_kill_and_resume_and_pass_the_gate(tmp_path, file_store):
    from components.stages.evaluate.executor import evaluate_candidate
    from components.stages.gate.executor import gate_candidate
    from components.stages.registry import store as registry
    from components.stages.train.entrypoint import run_training

    version = ingest_corpus(tmp_path, file_store)
    cfg = apply_params(small_config(epochs=6, patience=6, checkpoint_every_s=0, keep_checkpoint=True),
                       {"train.world_size": 2})

    lines: list[str] = []
    straight = train_processes(file_store, "toy", version, cfg, "ddp-straight", emit=lines.append)
    assert straight["distributed"] == {"world_size": 2, "backend": "gloo", "device_count": 0}
    assert straight["params"]["train"]["world_size"] == 2 and straight["resumed_from_epoch"] is None
    assert _metric_epochs(lines) == list(range(1, 7))  # rank 0's lines only: each epoch once

    # The same run killed (every process, no clean shutdown) after its second epoch, then resumed.
    command = torchrun_command(2, entry_args(file_store.uri, "toy", version, cfg, "ddp-killed"))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if " epoch=2 " in line:
            _kill_tree(proc.pid)  # as a pod dies: torchrun and every rank (each in its own session)
            break
    proc.wait()
    assert file_store.exists("runs/ddp-killed/checkpoint.pt") and not file_store.exists("runs/ddp-killed.json")
    resumed_lines: list[str] = []
    resumed = train_processes(file_store, "toy", version, cfg, "ddp-killed", emit=resumed_lines.append)
    assert resumed["resumed_from_epoch"] >= 2 and _metric_epochs(resumed_lines)[0] >= 3
    assert resumed["sha256"] == straight["sha256"]  # same world size: the same model bytes

    # Another world size is another run: another run key, and its checkpoint is not resumed.
    single = run_training(file_store, "toy", version, small_config(epochs=6, patience=6), "ddp-single",
                          emit=lambda _l: None, progress=False)
    assert single["run_key"] != straight["run_key"] and single["distributed"]["world_size"] == 1
    with pytest.raises(ValueError, match="written at world size 2; resume it at that world size"):
        run_training(file_store, "toy", version, small_config(epochs=6, patience=6), "ddp-straight",
                     emit=lambda _l: None, progress=False)

    candidate = registry.register_run(file_store, "toy-model", straight, alias="candidate")["version"]
    test, described = held_out_split(file_store, "toy", version, cfg.split.model_dump(mode="json"))
    evaluation = evaluate_candidate(file_store, "toy-model", candidate, test, described)
    decision = gate_candidate(file_store, "toy-model", evaluation, test, GateConfig())
    assert decision.decision == "BLESSED", decision.reasons
    assert decision.infra_validation["passed"]  # a real model server loads and serves it
