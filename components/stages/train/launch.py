"""Starting one training run as several local processes: torchrun around the shared entrypoint.

The train step (and `conveyor run` with `train.world_size: 2` or `--world-size 2`) calls this
when the run's world size is above one; the processes read the featurize step's encoding from the
store's feature cache, and rank 0 writes the run record that is returned. On a cluster the same
command is what a TrainJob's nodes run (`components/stages/train/trainjob.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from components.cluster.images import TRAINING_IMAGE
from components.cluster.kube import in_a_pod
from components.common.argcodec import encode_object
from components.common.config import ClusterConfig
from components.common.errors import ConveyorError
from components.stages.train.config import TrainingConfig
from components.tracking.runs import read_run

ENTRYPOINT = "components.stages.train.entrypoint"


def torchrun_command(procs_per_node: int, entry_args: list[str], nodes: int | None = None,
                     python: str = sys.executable) -> list[str]:
    """`--standalone` for one node (a local rendezvous on a free port); with `nodes`, the rendezvous
    comes from torchrun's PET_* environment, which Trainer's torch plugin sets in every node."""
    launcher = [python, "-m", "torch.distributed.run"]
    where = ["--standalone"] if nodes is None else []
    return [*launcher, *where, f"--nproc_per_node={procs_per_node}", "-m", ENTRYPOINT, *entry_args]


def entry_args(store_uri: str, dataset: str, version: str, cfg: TrainingConfig, run_id: str,
               image: str | None = None) -> list[str]:
    # base64url: a TrainJob's command must read the same whoever runs it through a shell
    args = ["--store", store_uri, "--dataset", dataset, "--version", version, "--run-id", run_id,
            "--config-b64", encode_object(cfg.model_dump(mode="json"))]
    return [*args, "--image", image] if image else args


def train_processes(store, dataset: str, version: str, cfg: TrainingConfig, run_id: str,
                    image: str | None = None, emit=print) -> dict[str, Any]:
    """Runs the training as `cfg.train.world_size` processes on this machine; returns rank 0's record."""
    command = torchrun_command(cfg.train.world_size, entry_args(store.uri, dataset, version, cfg, run_id, image))
    emit(f"training with {cfg.train.world_size} processes: torchrun --standalone "
         f"--nproc_per_node={cfg.train.world_size} -m {ENTRYPOINT} --run-id {run_id}")
    # torchrun would set OMP_NUM_THREADS=1 (and say so); the run's thread count is params.threads.
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.train.threads)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    if proc.stdout is None:  # stdout=PIPE always gives one; an explicit check survives python -O
        raise RuntimeError("the training process has no stdout pipe")
    for line in proc.stdout:  # rank 0's metric lines and every rank's errors, as they come
        emit(line.rstrip("\n"))
        tail = [*tail, line][-40:]
    if proc.wait() != 0:
        raise ConveyorError(f"training run {run_id} with {cfg.train.world_size} processes failed (exit "
                            f"{proc.returncode}); its last lines:\n{''.join(tail)}")
    return read_run(store, run_id)


def train_step(store, dataset: str, version: str, cfg: TrainingConfig, run_id: str, image: str | None,
               cluster: ClusterConfig, features=None, api=None, on_cluster: bool | None = None,
               emit=print) -> dict[str, Any]:
    """Where the pipeline's train step trains, by the run's settings:
    - on a cluster with `cluster.train_kind: TrainJob`: a TrainJob of nodes x procs_per_node processes;
    - `train.world_size` above 1: that many processes under torchrun in this pod (or machine);
    - else this process, on the featurize step's `features()` when they fit these settings."""
    on_cluster = in_a_pod() if on_cluster is None else on_cluster
    if on_cluster and cluster.train_kind == "TrainJob":
        from components.stages.train import trainjob  # lazy: the cluster path only

        manifest = trainjob.train_job(run_id, entry_args(store.uri, dataset, version, cfg, run_id, image), cluster,
                                      cluster.image or image or TRAINING_IMAGE)
        return trainjob.launch(api or trainjob.KubernetesTrainJobApi(), store, manifest, run_id,
                               cluster.train_timeout_s, log=emit)
    if cfg.train.world_size > 1:
        return train_processes(store, dataset, version, cfg, run_id, image, emit=emit)
    from components.stages.train.entrypoint import run_training  # lazy: imports torch

    return run_training(store, dataset, version, cfg, run_id, image=image,
                        features=features() if features else None)
