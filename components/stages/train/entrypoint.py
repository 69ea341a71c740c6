"""The one training entrypoint: local runs, the KFP train component and every Katib/Optuna trial.

    python -m components.stages.train.entrypoint --store s3://conveyor --dataset spamassassin \
        --version latest --run-id trial-7 --set lr=0.02 --set embed_dim=128

Reads a dataset version, splits and featurizes it (cached), trains with early stopping and a
checkpoint per epoch (a restarted run with the same run id resumes), prints Katib metric lines,
evaluates on the test split and writes the run record and model artifacts to the store.

The same command runs under torchrun for DDP (each rank reads its shard; rank 0 prints, writes
and records; see `core.py` and `distributed.py`):

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m components.stages.train.entrypoint ...
Parameters are typed: `--set` values are validated against the config models, so a typo or a
wrong type fails before any work, naming the parameter.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from typing import Any

import torch

from components.common.argcodec import decode_object, decode_value
from components.common.config import read_config_file
from components.common.entry import run_main
from components.common.errors import ConfigError, ConveyorError
from components.common.hashing import sha256_hex
from components.common.layout import check_run_id, run_file_key
from components.common.storage import Store, open_store
from components.common.version import code_version
from components.dataset import versioning as v
from components.stages.featurize.executor import prepare_features
from components.stages.train import distributed as d
from components.stages.train.config import TrainingConfig, apply_params
from components.stages.train.core import (
    Checkpointer,
    classification_metrics,
    fit,
    metric_line,
    predict_logits,
    state_dict_bytes,
)
from components.stages.train.cv import cross_validate
from components.stages.train.data import Bags
from components.stages.train.models import served_model
from components.tracking.runs import new_run_id, run_key, write_run


def parse_set(values: list[str]) -> dict[str, Any]:
    """`name=value` pairs; a value is percent-decoded, then read as JSON (numbers, lists, booleans)
    where it parses, else kept as a string: `lr=0.02`, `features.word_ngrams=[1,3]` and Katib's
    shell-safe `features.word_ngrams=%5B1,3%5D` (components/common/argcodec.py) all work."""
    out: dict[str, Any] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set {item!r}: expected name=value")
        out[name] = decode_value(value)
    return out


def run_training(store: Store, dataset: str, version: str, cfg: TrainingConfig, run_id: str,
                 image: str | None = None, emit=print, progress: bool | None = None,
                 stop_after_epoch: int | None = None, features=None,
                 world: d.World | None = None, cv_folds: int = 0) -> dict[str, Any] | None:
    """Train one model and record it; returns the run record (also at runs/<run_id>.json), or None
    on a rank other than 0 (rank 0 records the run).

    `features`: the (featurizer, split tables) the pipeline's featurize step made for exactly these
    settings; without it the version is split and encoded here (or read from the feature cache).
    `cv_folds` >= 2: after training, the configuration's k-fold estimate over the train and
    validation splits (components.stages.train.cv), printed as a last metric line (`cv_accuracy=...`: a
    search's cross-validated objective) and recorded as `cv`."""

    check_run_id(run_id)
    world = world or d.World()
    if cv_folds and world.distributed:
        raise ConfigError("cross-validation (--cv-folds) runs in one process; it cannot run under torchrun")
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.perf_counter()
    ref = v.resolve(store, dataset, version)
    if cfg.train.world_size != world.world_size:  # the world that runs is the one recorded
        cfg = apply_params(cfg, {"train.world_size": world.world_size})
    params = cfg.params()
    featurizer, tables = features or _features(store, dataset, ref.version, params, world)
    bags = {name: Bags.from_table(t) for name, t in tables.items()}
    if len(bags["validation"]) == 0:
        raise ConveyorError(f"dataset {dataset}@{ref.version}: the validation split is empty; early stopping "
                            "needs it (raise split.validation or add data)")

    checkpoint = run_file_key(run_id, "checkpoint.pt")
    result = fit(bags["train"], bags["validation"], featurizer.num_ids, len(featurizer.labels), cfg.train,
                 checkpointer=Checkpointer(store, checkpoint), emit=emit, progress=progress,
                 stop_after_epoch=stop_after_epoch, world=world)
    if not world.is_main:
        return None
    status = "completed"
    if stop_after_epoch is not None and not result.stopped_early and len(result.history) < cfg.train.epochs:
        status = "interrupted"

    metrics = _served_metrics(cfg, featurizer, result, bags)
    cv = _cv_estimate(tables, featurizer, cfg, cv_folds, result, emit) if cv_folds and status == "completed" else None
    files = _write_model(store, run_id, result, featurizer)

    # A completed run needs no resume: its checkpoint (the largest file a run writes) goes, unless kept.
    checkpointed = store.exists(checkpoint)  # a run shorter than train.checkpoint_every_s wrote none
    keep_checkpoint = checkpointed and (status != "completed" or cfg.train.keep_checkpoint)
    code = code_version()
    record = {
        "run_id": run_id, "status": status,
        "run_key": run_key(ref.version, params, code, image, world.describe()),
        "distributed": world.describe(),
        "dataset": {"name": dataset, "version": ref.version},
        "params": params, "code_version": code, "image": image,
        "device": result.device, "started_at": started_at,
        "duration_s": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "history": result.history, "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_docs_per_s": round(result.train_docs_per_s, 1),
        "metrics": metrics, "cv": cv,
        "labels": featurizer.labels,
        "artifacts": {**files["artifacts"], "checkpoint": store.url(checkpoint) if keep_checkpoint else None},
        "sha256": files["sha256"],
    }
    write_run(store, record)
    if checkpointed and not keep_checkpoint:
        store.delete(checkpoint)
    return record


def _cv_estimate(tables, featurizer, cfg: TrainingConfig, folds: int, result, emit) -> dict[str, Any]:
    """The configuration's k-fold estimate, trained for the epochs the run chose, printed as a last
    metric line (a search's cross-validated objective)."""
    cv = cross_validate(tables, featurizer.num_ids, len(featurizer.labels), cfg.train, folds, cfg.split.salt,
                        result.best_epoch or cfg.train.epochs)
    emit(metric_line(len(result.history), {"cv_accuracy": cv["accuracy"]["mean"],
                                           "cv_macro_f1": cv["macro_f1"]["mean"]}))
    return cv


def _write_model(store: Store, run_id: str, result, featurizer) -> dict[str, dict[str, str]]:
    """The run's model files (the best epoch's weights, the featurizer), with their URLs and checksums."""
    weights, featurizer_bytes = state_dict_bytes(result.state_dict), featurizer.dumps()
    store.write_bytes(run_file_key(run_id, "model/weights.pt"), weights)
    store.write_bytes(run_file_key(run_id, "model/featurizer.json"), featurizer_bytes)
    return {"artifacts": {"weights": store.url(run_file_key(run_id, "model/weights.pt")),
                          "featurizer": store.url(run_file_key(run_id, "model/featurizer.json"))},
            "sha256": {"weights.pt": sha256_hex(weights), "featurizer.json": sha256_hex(featurizer_bytes)}}


def _served_metrics(cfg: TrainingConfig, featurizer, result, bags: dict[str, Bags]) -> dict[str, Any]:
    """Validation and test metrics of the served form itself (what the registry loads), not of the
    training module."""
    model = served_model(cfg.train.model_dump(), featurizer.num_ids, len(featurizer.labels), result.state_dict)
    device = torch.device(result.device)
    model.to(device)
    metrics = {}
    for split in ("validation", "test"):
        logits = predict_logits(model, bags[split], device)
        metrics[split] = classification_metrics(logits, bags[split].labels, len(featurizer.labels)) \
            if len(bags[split]) else {}
    return metrics


def _features(store: Store, dataset: str, version: str, params: dict[str, Any], world: d.World):
    """The split's features, this rank's shard of train. Rank 0 encodes (and publishes to the feature
    cache) first, so the other ranks read the cache instead of encoding the same thing at once."""
    def prepare():
        return prepare_features(store, dataset, version, params["split"], params["features"], shard=world.shard)
    if not world.distributed:
        return prepare()
    made = prepare() if world.is_main else None
    d.barrier(world)
    return made or prepare()


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.stages.train.entrypoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="store URI (default $CONVEYOR_STORE)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--version", default="latest")
    parser.add_argument("--run-id", help="run id (a restarted run with the same id resumes its checkpoint)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="config YAML (default $CONVEYOR_CONFIG, else configs/spamassassin.yaml)")
    source.add_argument("--config-json", metavar="JSON", help="the run's config as a JSON object")
    source.add_argument("--config-b64", metavar="BASE64URL",
                        help="the run's config as base64url of a JSON object: what Katib trials and TrainJobs are "
                             "given (no file needed, and no character a shell would change)")
    parser.add_argument("--params", default="{}", help="JSON object of parameters")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="one parameter")
    parser.add_argument("--image", help="image reference, recorded in the run key")
    parser.add_argument("--cv-folds", type=int, default=0, metavar="K",
                        help="after training, the k-fold cross-validated estimate as a last metric line "
                             "(cv_accuracy=..., cv_macro_f1=...): a search's objective.cv_folds")
    args = parser.parse_args(argv)

    def work() -> int:
        params = {**_json_object(args.params, "--params"), **parse_set(args.set)}
        if args.config_b64 is not None:
            run_config, origin = decode_object(args.config_b64, "--config-b64"), "--config-b64"
        elif args.config_json is not None:
            run_config, origin = _json_object(args.config_json, "--config-json"), "--config-json"
        else:
            run_config, origin = read_config_file(args.config)
        base = TrainingConfig.of(run_config, origin)
        cfg = apply_params(base, params)
        world = d.world_from_env()
        if world.distributed and not args.run_id:
            raise ConfigError("--run-id is required under torchrun: every rank must name the same run")
        if args.cv_folds == 1 or args.cv_folds < 0:
            raise ConfigError(f"--cv-folds {args.cv_folds}: 0 (off) or at least 2")
        with d.joined(world):
            record = run_training(open_store(args.store), args.dataset, args.version, cfg,
                                  args.run_id or new_run_id(), image=args.image, world=world,
                                  cv_folds=args.cv_folds)
        if record is None:
            return 0
        test = record["metrics"].get("test", {})
        sys.stdout.write(f"run {record['run_id']} done: best epoch {record['best_epoch']}, test accuracy "
                         f"{test.get('accuracy', float('nan')):.4f}\n")
        return 0

    return run_main("train", work)


if __name__ == "__main__":
    sys.exit(main())
