"""Experiment tracking: one JSON record per training run in the store (`runs/<run_id>.json`)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from components.common import audit
from components.common.errors import NotFoundError
from components.common.hashing import sha256_of_value
from components.common.layout import RUNS_PREFIX, run_file_key, run_record_key
from components.common.storage import Store


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dt%H%M%S')}-{secrets.token_hex(3)}"


def run_key(dataset_version: str, params: dict[str, Any], code_version: str, image: str | None,
            distributed: dict[str, Any] | None = None) -> str:
    """Sealed identity of what a run computes: same key, same inputs (so results should match).
    `distributed`: world size, backend and device count (another world size is another result)."""
    return sha256_of_value({"dataset_version": dataset_version, "params": params, "code_version": code_version,
                            "image": image or "", "distributed": distributed or {"world_size": 1}})


def write_run(store: Store, record: dict[str, Any]) -> str:
    key = run_record_key(record["run_id"])
    store.write_json(key, record)
    test = (record.get("metrics") or {}).get("test") or {}
    dataset = record.get("dataset") or {}
    audit.append(store, "training_run_finished", {"run": record["run_id"], "dataset": dataset.get("name"),
                                                  "version": dataset.get("version")},
                 {"outcome": record.get("status"), "test_accuracy": test.get("accuracy"), "record": key,
                  "device": record.get("device"), "duration_s": record.get("duration_s")})
    return store.url(key)


RUN_FILES = ("model/weights.pt", "model/featurizer.json", "checkpoint.pt")


def remove_run_files(store: Store, run_id: str, reason: str) -> list[str]:
    """Delete a run's model and checkpoint files, keeping its record (params, history, metrics),
    which says why they went. A run stopped before it recorded anything (a pruned trial) leaves
    only a checkpoint: that goes too. Returns the files removed."""
    removed = []
    for name in RUN_FILES:
        key = run_file_key(run_id, name)
        if store.exists(key):
            store.delete(key)
            removed.append(name)
    if store.exists(run_record_key(run_id)):
        record = read_run(store, run_id)
        record["artifacts"] = {name: None for name in record.get("artifacts") or {}}
        record["files_removed"] = reason
        store.write_json(run_record_key(run_id), record)
    return removed


def read_run(store: Store, run_id: str) -> dict[str, Any]:
    try:
        return store.read_json(run_record_key(run_id))
    except NotFoundError as exc:
        raise NotFoundError(f"no run {run_id!r} in {store.uri}") from exc


def list_runs(store: Store) -> list[dict[str, Any]]:
    keys = [k for k in store.list(RUNS_PREFIX) if k.count("/") == 1 and k.endswith(".json")]
    return sorted((store.read_json(k) for k in keys), key=lambda r: r.get("started_at", ""))


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    test = record.get("metrics", {}).get("test", {})
    val = record.get("metrics", {}).get("validation", {})
    return {"run_id": record["run_id"], "status": record.get("status"), "family": record["params"]["train"]["family"],
            "dataset": f"{record['dataset']['name']}@{record['dataset']['version']}",
            "val_accuracy": val.get("accuracy"), "test_accuracy": test.get("accuracy"),
            "epochs": len(record.get("history", [])), "seconds": record.get("duration_s"),
            "started_at": record.get("started_at")}


def compare(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Parameters that differ between runs, and each run's metrics side by side."""
    flat = [_flatten(r["params"]) for r in records]
    keys = sorted(set().union(*flat))
    differing = {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}
    metrics = {r["run_id"]: {split: r.get("metrics", {}).get(split, {}) for split in ("validation", "test")}
               for r in records}
    return {"runs": [r["run_id"] for r in records], "differing_params": differing, "metrics": metrics}


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out
