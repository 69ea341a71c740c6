"""The training loop: early stopping on validation, checkpoints (after an epoch, at most every
`checkpoint_every_s`), exact resume.

Deterministic on CPU: seeded, deterministic algorithms, per-epoch shuffling from (seed, epoch), and
the dropout RNG saved in checkpoints, so an interrupted run resumed from its checkpoint ends with
the same bytes as an uninterrupted one. Uses CUDA when present with the same code.

Under torchrun (`distributed.World`) the model is wrapped in DistributedDataParallel: each rank
trains on its shard of the training split (padded to the longest shard, as torch's
DistributedSampler pads, so every rank takes the same number of steps), gradients are averaged
across ranks, every rank evaluates the same weights on the whole validation split (so early
stopping decides the same everywhere without a message), and only rank 0 prints metric lines and
writes checkpoints. The same world size gives the same bytes on CPU (gloo sums in rank order);
another world size is another optimization (another global batch and data order), so its model
differs.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from components.stages.train import distributed as d
from components.stages.train.config import TrainParams
from components.stages.train.data import Bags
from components.stages.train.models import build_from_params, export_state, mark_seen

# 2: compact (only the rows training updates, the best epoch in its exported form)
CHECKPOINT_FORMAT = 2


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def metric_line(epoch: int, metrics: dict[str, float], now: dt.datetime | None = None) -> str:
    """One line in Katib's StdOut collector format. The first token is an RFC 3339 timestamp (the
    collector parses it with RFC3339Nano, else the observation gets year 1); microseconds, because
    Katib orders observations by time and two fast epochs tie on whole seconds (medianstop reads
    the first start_step of them)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    values = " ".join(f"{k}={v:.6f}" for k, v in metrics.items())
    return f"{stamp} epoch={epoch} {values}"


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    loss = nn.functional.cross_entropy(logits, labels).item() if len(labels) else math.nan
    preds = logits.argmax(dim=1)
    accuracy = (preds == labels).float().mean().item() if len(labels) else math.nan
    f1s = []
    for c in range(num_classes):
        tp = ((preds == c) & (labels == c)).sum().item()
        fp = ((preds == c) & (labels != c)).sum().item()
        fn = ((preds != c) & (labels == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": accuracy, "loss": loss, "macro_f1": float(np.mean(f1s))}


@torch.no_grad()
def predict_logits(model: nn.Module, bags: Bags, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    out = []
    for ids, offsets, _labels in bags.batches(batch_size):
        out.append(model(ids.to(device), offsets.to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


class _Optimizer:
    """SparseAdam for the embedding table (sparse gradients), AdamW for every other weight."""

    def __init__(self, model: nn.Module, params: TrainParams, sparse_gradients: bool = True):
        sparse = [p for n, p in model.named_parameters() if n.startswith("embedding.")]
        dense = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
        # Dense embedding gradients (nccl): plain Adam on the table, as SparseAdam is Adam on the rows used.
        self.sparse = torch.optim.SparseAdam(sparse, lr=params.lr) if sparse_gradients else \
            torch.optim.Adam(sparse, lr=params.lr)
        self.dense = torch.optim.AdamW(dense, lr=params.lr, weight_decay=params.weight_decay)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sparse.zero_grad(set_to_none=set_to_none)
        self.dense.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.sparse.step()
        self.dense.step()

    def state_dict(self) -> dict[str, Any]:
        return {"sparse": self.sparse.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sparse.load_state_dict(state["sparse"])
        self.dense.load_state_dict(state["dense"])


class Checkpointer:
    """Saves and loads training state through a store key (bytes via torch.save, loaded weights_only)."""

    def __init__(self, store, key: str):
        self.store, self.key = store, key

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.store.write_bytes(self.key, buffer.getvalue())

    def load(self) -> dict[str, Any] | None:
        if not self.store.exists(self.key):
            return None
        return torch.load(io.BytesIO(self.store.read_bytes(self.key)), weights_only=True)


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None
    device: str
    train_docs_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _progress(epoch: int, epochs: int, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\repoch {epoch}/{epochs} [{'#' * filled}{' ' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def fit(train: Bags, validation: Bags, num_ids: int, num_classes: int, params: TrainParams,
        checkpointer: Checkpointer | None = None, emit: Callable[[str], None] = print,
        progress: bool | None = None, stop_after_epoch: int | None = None,
        world: d.World | None = None, keep_module_state: bool = False, early_stopping: bool = True) -> FitResult:
    """Train with early stopping on validation accuracy; return the best epoch's weights.

    `stop_after_epoch` ends the loop after that epoch as if the process had been killed (tests).
    `world`: this process's place in a torchrun world (`train` is then this rank's shard).
    `early_stopping=False`: every epoch runs and the last one's weights are returned (cross-validation
    trains each fold for a fixed number of epochs and must not pick them on the fold it scores).
    `keep_module_state`: also return the best epoch's whole training module (`extra["module_state"]`,
    every row of the table): the bench compares it with the served form.
    """
    world = world or d.World()
    device = world.device() if world.distributed else pick_device()
    torch.manual_seed(params.seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.set_num_threads(params.threads)
    progress = (sys.stderr.isatty() if progress is None else progress) and world.is_main
    if not world.is_main:
        emit = _silent

    model, net, optimizer, rows, train = _setup(train, num_ids, num_classes, params, world, device)
    run = _resume(checkpointer, world, params, rows, model, optimizer)
    history, best, bad_epochs, resumed = run.history, run.best, run.bad_epochs, run.resumed_from_epoch
    module_state = None
    stopped_early = bad_epochs >= params.patience
    checkpoints = _Checkpoints(checkpointer, world, params)
    seconds = 0.0
    seen = 0

    for epoch in range(run.start_epoch, params.epochs + 1):
        if stopped_early:
            break
        model.train()
        started = time.perf_counter()
        train_loss, batches, done = _train_epoch(net, optimizer, train, params, epoch, device, progress)
        seconds += time.perf_counter() - started
        seen += done * world.world_size  # every rank took as many rows (padded shards)
        if progress:
            _progress(epoch, params.epochs, done, len(train))
            sys.stderr.write("\n")

        metrics = _epoch_metrics(model, validation, num_classes, device, world, train_loss, batches)
        history.append({"epoch": epoch, **metrics})
        improved = not early_stopping or (metrics["accuracy"], -metrics["loss"]) > (best["accuracy"], -best["loss"])
        if improved:
            best = {"epoch": epoch, "accuracy": metrics["accuracy"], "loss": metrics["loss"],
                    "state": export_state(model)}
            if keep_module_state:
                module_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        stopped_early = early_stopping and bad_epochs >= params.patience and epoch < params.epochs
        checkpoints.after_epoch(epoch, model, optimizer, rows, history, best, bad_epochs)
        # After the checkpoint: an epoch whose metrics anyone has seen is never lost.
        emit(metric_line(epoch, metrics))
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break

    return FitResult(state_dict=best["state"], history=history, best_epoch=best["epoch"],
                     stopped_early=stopped_early, resumed_from_epoch=resumed, device=str(device),
                     train_docs_per_s=seen / seconds if seconds else 0.0,
                     extra={"module_state": module_state} if keep_module_state else {})


def _epoch_metrics(model: nn.Module, validation: Bags, num_classes: int, device: torch.device, world: d.World,
                   train_loss: torch.Tensor, batches: int) -> dict[str, float]:
    """An epoch's validation accuracy, loss and macro F1, and its training loss averaged over ranks."""
    val = classification_metrics(predict_logits(model, validation, device), validation.labels, num_classes)
    return {"accuracy": val["accuracy"], "loss": val["loss"], "macro_f1": val["macro_f1"],
            "train_loss": d.mean_scalar(world, train_loss).item() / max(batches, 1)}


class _Checkpoints:
    """A run's checkpoint after an epoch, at most every `checkpoint_every_s`, written by rank 0
    with every rank's RNG state (gathered on all ranks, so each epoch makes the same collective call)."""

    def __init__(self, checkpointer: Checkpointer | None, world: d.World, params: TrainParams):
        self.checkpointer, self.world, self.params = checkpointer, world, params
        self.last = time.monotonic()

    def after_epoch(self, epoch: int, model: nn.Module, optimizer: _Optimizer, rows: torch.Tensor,
                    history: list[dict[str, float]], best: dict[str, Any], bad_epochs: int) -> None:
        world = self.world
        rng = d.gather_objects(world, torch.get_rng_state()) if world.distributed else torch.get_rng_state()
        if not (self.checkpointer and world.is_main and time.monotonic() - self.last >= self.params.checkpoint_every_s):
            return
        self.last = time.monotonic()
        self.checkpointer.save({"format": CHECKPOINT_FORMAT, "params": self.params.model_dump(mode="json"),
                                "epoch": epoch, **_training_state(model, optimizer, rows), "rng": rng,
                                "world_size": world.world_size, "history": history, "best": best,
                                "bad_epochs": bad_epochs})


def _setup(train: Bags, num_ids: int, num_classes: int, params: TrainParams, world: d.World,
           device: torch.device) -> tuple[nn.Module, nn.Module, _Optimizer, torch.Tensor, Bags]:
    """The model with the rows any rank's shard updates marked seen (and those rows), its optimizer,
    and the module the epochs run: the model itself, or in a torchrun world its DDP wrapper, with
    this rank's shard padded to the longest so every rank takes as many steps."""
    model = build_from_params(params.model_dump(), num_ids, num_classes,
                              sparse_gradients=world.sparse_gradients).to(device)
    used = torch.zeros(num_ids, dtype=torch.bool)
    used[train.ids] = True
    used = d.any_ranks(world, used)
    mark_seen(model, used)
    rows = torch.nonzero(used).flatten()
    optimizer = _Optimizer(model, params, world.sparse_gradients)
    net: nn.Module = model
    if world.distributed:
        # Same initial weights on every rank (same seed; DDP also broadcasts rank 0's), then each
        # rank its own dropout stream.
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(params.seed + 7919 * world.rank)
        train = train.padded_to(d.max_int(world, len(train)))
    return model, net, optimizer, rows, train


@dataclass
class _Resumed:
    """Where the epoch loop starts: from scratch, or from a run's checkpoint."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "accuracy": -1.0, "loss": math.inf,
                                                          "state": None})
    bad_epochs: int = 0
    start_epoch: int = 1
    resumed_from_epoch: int | None = None


def _resume(checkpointer: Checkpointer | None, world: d.World, params: TrainParams, rows: torch.Tensor,
            model: nn.Module, optimizer: _Optimizer) -> _Resumed:
    """The checkpoint's weights, optimizer moments and random state put back, when there is one that
    belongs to this run (same world size, parameters and table rows; otherwise a clear error)."""
    state = checkpointer.load() if checkpointer else None
    if state is None:
        return _Resumed()
    if state.get("world_size", 1) != world.world_size:
        raise ValueError(f"the checkpoint was written at world size {state.get('world_size', 1)}; resume it "
                         f"at that world size (this run has {world.world_size}) or use a new run id")
    if state.get("format") != CHECKPOINT_FORMAT or state.get("params") != params.model_dump(mode="json"):
        raise ValueError("the checkpoint belongs to a run with other parameters; use a new run id")
    if not torch.equal(state["rows"], rows):
        raise ValueError("the checkpoint was trained on other rows of the table (another training split); "
                         "use a new run id")
    _load_training_state(model, optimizer, state, rows)
    rng = state["rng"]
    torch.set_rng_state(rng[world.rank] if isinstance(rng, list) else rng)
    return _Resumed(history=state["history"], best=state["best"], bad_epochs=state["bad_epochs"],
                    start_epoch=state["epoch"] + 1, resumed_from_epoch=state["epoch"])


def _train_epoch(net: nn.Module, optimizer: _Optimizer, train: Bags, params: TrainParams, epoch: int,
                 device: torch.device, progress: bool) -> tuple[torch.Tensor, int, int]:
    """One pass over `train` in this epoch's seeded order: (summed loss on the device, batches, rows)."""
    generator = torch.Generator().manual_seed(params.seed * 1_000_003 + epoch)
    train_loss, batches, done = torch.zeros((), device=device), 0, 0
    for ids, offsets, labels in train.batches(params.batch_size, generator):
        ids, offsets, labels = ids.to(device), offsets.to(device), labels.to(device)
        loss = nn.functional.cross_entropy(net(ids, offsets), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_loss += loss.detach()  # summed on the device: no host sync per step
        batches += 1
        done += len(labels)
        if progress and batches % 20 == 0:
            _progress(epoch, params.epochs, done, len(train))
    return train_loss, batches, done


def _training_state(model: nn.Module, optimizer: _Optimizer, rows: torch.Tensor) -> dict[str, Any]:
    """What resume needs: the weights and optimizer moments of the rows training updates (the other
    rows never change from their seeded initial values, which a resumed run rebuilds)."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items() if k != "seen"}
    table = weights["embedding.weight"].shape[0]
    weights["embedding.weight"] = weights["embedding.weight"][rows]
    moments = optimizer.state_dict()
    moments["sparse"] = _map_rows(moments["sparse"], table, lambda t: t.cpu()[rows])
    return {"rows": rows, "model": weights, "optimizer": moments}


def _load_training_state(model: nn.Module, optimizer: _Optimizer, state: dict[str, Any], rows: torch.Tensor) -> None:
    current = model.state_dict()
    table = current["embedding.weight"].shape[0]
    weights = dict(state["model"])
    full = current["embedding.weight"].detach().clone()
    full[rows.to(full.device)] = weights["embedding.weight"].to(full.device)
    weights["embedding.weight"] = full
    model.load_state_dict(weights | {"seen": current["seen"]})

    def expand(compact: torch.Tensor) -> torch.Tensor:
        out = compact.new_zeros((table, *compact.shape[1:]))
        out[rows] = compact
        return out

    moments = dict(state["optimizer"])
    moments["sparse"] = _map_rows(moments["sparse"], rows.numel(), expand)
    optimizer.load_state_dict(moments)


def _map_rows(optimizer_state: dict[str, Any], rows: int, change) -> dict[str, Any]:
    """The embedding optimizer's state with `change` applied to each per-row moment tensor."""
    state = {index: {name: change(value) if torch.is_tensor(value) and value.dim() and value.shape[0] == rows
                     else value for name, value in slots.items()}
             for index, slots in optimizer_state["state"].items()}
    return {**optimizer_state, "state": state}


def _silent(_line: str) -> None:
    pass


def state_dict_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()
