"""Model registry in the store: immutable, content-addressed versions and movable aliases.

    models/<name>/<version>/weights.pt        the compact served form (components.stages.train.models.export_state;
                                              torch.save), loaded with weights_only=True
    models/<name>/<version>/featurizer.json   the exact featurizer training used
    models/<name>/<version>/model_card.json   metrics, params, dataset version, run key, sha256 of every file
    models/<name>/aliases/<alias>.json        movable pointers: production, staging, candidate, ...

Each environment has its alias (config `environments`): `staging`, `production`. `champion`, the
name production had before environments, stays another name for `production`: it resolves and
moves the same pointer, and a store written before (a `champion.json`) is read as production
until the next promotion writes `production.json`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.common import audit
from components.common.errors import InputError, IntegrityError, NotFoundError
from components.common.hashing import sha256_hex
from components.common.layout import (
    alias_key,
    alias_prefix,
    model_card_key,
    model_cross_validation_key,
    model_explanations_key,
    model_prefix,
    model_version_prefix,
    run_file_key,
)
from components.common.storage import Store
from components.stages.featurize.core import Featurizer
from components.stages.train.served_numpy import FoldedBagScorer, UnsupportedState, read_state

ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
PRODUCTION_ALIAS = "production"
LEGACY_PRODUCTION_ALIAS = "champion"


def canonical_alias(alias: str) -> str:
    return PRODUCTION_ALIAS if alias == LEGACY_PRODUCTION_ALIAS else alias


def _alias_file(store: Store, name: str, alias: str) -> str | None:
    """The key holding `alias` (after synonyms; a pre-environments champion.json for production)."""
    alias = canonical_alias(alias)
    for key in (alias_key(name, alias),) + ((alias_key(name, LEGACY_PRODUCTION_ALIAS),)
                                            if alias == PRODUCTION_ALIAS else ()):
        if store.exists(key):
            return key
    return None
FILES = ("weights.pt", "featurizer.json")


def register(store: Store, name: str, weights: bytes, featurizer: bytes, card: dict[str, Any]) -> dict[str, Any]:
    """Store a model version (idempotent: the same bytes give the same version); returns its card."""
    hashes = {"weights.pt": sha256_hex(weights), "featurizer.json": sha256_hex(featurizer)}
    version = sha256_hex((hashes["weights.pt"] + hashes["featurizer.json"]).encode())[:12]
    prefix = model_version_prefix(name, version)
    if store.exists(model_card_key(name, version)):
        return store.read_json(model_card_key(name, version))
    store.write_bytes(f"{prefix}/weights.pt", weights)
    store.write_bytes(f"{prefix}/featurizer.json", featurizer)
    full = {**card, "name": name, "version": version, "files": hashes}
    store.write_json(model_card_key(name, version), full)  # last: no card, no version
    dataset = full.get("dataset") or {}
    test = (full.get("metrics") or {}).get("test") or {}
    audit.append(store, "model_registered", {"model": name, "version": version},
                 {"run_id": full.get("run_id"), "dataset": dataset.get("name"),
                  "dataset_version": dataset.get("version"), "test_accuracy": test.get("accuracy")})
    return full


def set_alias(store: Store, name: str, alias: str, version: str, reason: str | None = None) -> None:
    if not ALIAS_RE.match(alias):
        raise InputError(f"alias {alias!r}: use a lower-case word like production, staging or candidate")
    if not store.exists(model_card_key(name, version)):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    alias = canonical_alias(alias)
    held = _alias_file(store, name, alias)
    previous = store.read_json(held)["version"] if held else None
    store.write_json(alias_key(name, alias), {"version": version})
    if previous == version and held == alias_key(name, alias):
        return  # nothing moved: no audit entry
    details = {"from": previous} | ({"reason": reason} if reason else {})
    audit.append(store, "alias_moved", {"model": name, "alias": alias, "version": version}, details)


def resolve_version(store: Store, name: str, ref: str) -> str:
    """A version id, or the version an alias points to."""
    key = _alias_file(store, name, ref) if ALIAS_RE.match(ref) else None
    if key is not None:
        return store.read_json(key)["version"]
    if store.exists(model_card_key(name, ref)):
        return ref
    raise NotFoundError(f"model {name!r} has no version or alias {ref!r} in {store.uri}")


def list_versions(store: Store, name: str) -> list[dict[str, Any]]:
    cards = [store.read_json(k) for k in store.list(model_prefix(name) + "/") if k.endswith("/model_card.json")]
    return sorted(cards, key=lambda c: c.get("created_at", ""))


def aliases(store: Store, name: str) -> dict[str, str]:
    prefix = alias_prefix(name)
    found = {k[len(prefix):-5]: store.read_json(k)["version"] for k in store.list(prefix) if k.endswith(".json")}
    legacy = found.pop(LEGACY_PRODUCTION_ALIAS, None)
    if legacy is not None:
        found.setdefault(PRODUCTION_ALIAS, legacy)
    return found


@dataclass
class LoadedModel:
    card: dict[str, Any]
    model: Any
    featurizer: Any

    def predict_proba(self, texts):
        """Class probabilities (n, classes) for a pyarrow array or list of texts: featurize, forward,
        softmax. The one scoring path for evaluation, infra validation and serving."""
        if not len(texts):
            return np.empty((0, len(self.featurizer.labels)), dtype=np.float32)
        return self._forward(self.featurizer.encode(texts))

    def predict_log_proba_tokenized(self, docs: list[list[str]]) -> np.ndarray:
        """Log-probabilities for documents given as token lists (featurizer.tokenize): what
        explanations score, in log space so that a confident answer keeps its resolution."""
        if not docs:
            return np.empty((0, len(self.featurizer.labels)), dtype=np.float32)
        return self._forward(self.featurizer.encode_tokenized(docs), log=True)

    def _forward(self, enc, log: bool = False) -> np.ndarray:
        in_numpy = getattr(self.model, "logits_numpy", None)  # the embedding_bag family's served form
        if in_numpy is not None:
            logits = in_numpy(enc.ids, enc.offsets[:-1]).astype(np.float32, copy=False)
            shifted = logits - logits.max(axis=1, keepdims=True)  # as torch's softmax: exp never overflows
            exp = np.exp(shifted)
            total = exp.sum(axis=1, keepdims=True)
            return shifted - np.log(total) if log else exp / total
        # lazy: torch loads in ~1 s; only this path needs it
        import torch

        with torch.inference_mode():  # no autograd bookkeeping at all (no_grad still versions tensors)
            logits = self.model(torch.from_numpy(enc.ids), torch.from_numpy(enc.offsets[:-1])).float()
            return (torch.log_softmax(logits, dim=1) if log else torch.softmax(logits, dim=1)).numpy()


def write_explanations(store: Store, name: str, version: str, explanations: dict[str, Any]) -> None:
    """Attach global explanations to a version. Beside the card, not in it: the card is written
    once with the version, and explanations come later, from the evaluate step's held-out rows."""
    if not store.exists(model_card_key(name, version)):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    store.write_json(model_explanations_key(name, version), explanations)


def write_cross_validation(store: Store, name: str, version: str, estimate: dict[str, Any]) -> None:
    """Attach the evaluate step's k-fold estimate to a version (beside the card, as explanations)."""
    if not store.exists(model_card_key(name, version)):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    store.write_json(model_cross_validation_key(name, version), estimate)


def read_cross_validation(store: Store, name: str, version: str) -> dict[str, Any] | None:
    key = model_cross_validation_key(name, version)
    return store.read_json(key) if store.exists(key) else None


def read_explanations(store: Store, name: str, version: str) -> dict[str, Any] | None:
    key = model_explanations_key(name, version)
    return store.read_json(key) if store.exists(key) else None


def load_card(store: Store, name: str, ref: str = "champion") -> dict[str, Any]:
    return store.read_json(model_card_key(name, resolve_version(store, name, ref)))


def test_accuracy(store: Store, name: str, version: str) -> float | None:
    """A version's test accuracy from its model card (None: unknown version or no such metric)."""
    try:
        return load_card(store, name, version)["metrics"]["test"]["accuracy"]
    except (NotFoundError, KeyError, TypeError):
        return None


def load(store: Store, name: str, ref: str = "champion") -> LoadedModel:
    """Load and verify a version: every file must match the sha256 in its model card."""
    version = resolve_version(store, name, ref)
    prefix = model_version_prefix(name, version)
    return _verified(store.read_json(model_card_key(name, version)),
                     lambda file: store.read_bytes(f"{prefix}/{file}"), lambda file: store.url(f"{prefix}/{file}"))


def dir_card(path: str) -> dict[str, Any]:
    """The model card of a version folder (what KServe's storage initializer puts in /mnt/models)."""

    try:
        with open(os.path.join(path, "model_card.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:  # a path the user gave: bad input, as `conveyor serve` reports it
        raise InputError(f"{path}: no model_card.json (expected a registry version folder)") from exc


def load_dir(path: str) -> LoadedModel:
    """A version copied to a local folder, verified against its own model card the same way."""

    card = dir_card(path)

    def read(file: str) -> bytes:
        with open(os.path.join(path, file), "rb") as handle:
            return handle.read()

    return _verified(card, read, lambda file: os.path.join(path, file))


def _verified(card: dict[str, Any], read, where) -> LoadedModel:
    blobs = {}
    for file in FILES:
        data = read(file)
        actual = sha256_hex(data)
        if actual != card["files"][file]:
            raise IntegrityError(f"{where(file)}: sha256 {actual[:12]}… does not match the model "
                                 f"card's {card['files'][file][:12]}…; refusing a modified model file")
        blobs[file] = data
    featurizer = Featurizer.loads(blobs["featurizer.json"])
    try:
        return LoadedModel(card, _served(card["params"]["train"], featurizer, blobs["weights.pt"]), featurizer)
    except ValueError as exc:  # bytes that match the card but no model form this code knows
        raise IntegrityError(f"{where('weights.pt')}: {exc}") from exc


def _served(params: dict[str, Any], featurizer: Featurizer, weights: bytes) -> Any:
    scorer = _numpy_scorer(params, featurizer, weights)
    if scorer is not None:
        return scorer
    # lazy: torch loads in ~1 s and holds ~180 MiB; only the other model forms need it
    import torch

    # lazy: the module defines torch classes
    from components.stages.train.models import served_model

    return served_model(params, featurizer.num_ids, len(featurizer.labels),
                        torch.load(io.BytesIO(weights), weights_only=True))


def _numpy_scorer(params: dict[str, Any], featurizer: Featurizer, weights: bytes) -> FoldedBagScorer | None:
    """The embedding_bag family's compact form, scored in numpy without importing torch; None for
    every other form (the caller loads those with torch)."""
    if params.get("family") != "embedding_bag":
        return None
    try:
        state = read_state(weights)
    except UnsupportedState:
        return None
    if set(state) != {"rows", "table", "bias"}:
        return None  # the whole training module, as runs wrote it before the compact form
    table, rows, bias, classes = state["table"], state["rows"], state["bias"], len(featurizer.labels)
    if table.ndim != 2 or table.shape != (len(rows), classes) or bias.shape != (classes,):
        raise ValueError(f"the table is {table.shape} and the bias {bias.shape}, expected "
                         f"({len(rows)}, {classes}) and ({classes},) for {classes} classes")
    if len(rows) and (rows.min() < 0 or rows.max() >= featurizer.num_ids):
        raise ValueError(f"row ids outside the featurizer's {featurizer.num_ids} ids")
    return FoldedBagScorer(featurizer.num_ids, rows, table, bias)


def register_run(store: Store, name: str, record: dict[str, Any], alias: str | None = "candidate") -> dict[str, Any]:
    """Register the model a training run wrote (verifying its bytes against the run record)."""

    weights = store.read_bytes(run_file_key(record["run_id"], "model/weights.pt"))
    featurizer = store.read_bytes(run_file_key(record["run_id"], "model/featurizer.json"))
    for file, data in (("weights.pt", weights), ("featurizer.json", featurizer)):
        if sha256_hex(data) != record["sha256"][file]:
            raise IntegrityError(f"run {record['run_id']}: {file} changed since training (sha256 mismatch)")
    card = register(store, name, weights, featurizer, {
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_id": record["run_id"], "run_key": record["run_key"], "dataset": record["dataset"],
        "params": record["params"], "metrics": record["metrics"], "labels": record["labels"],
        "code_version": record["code_version"], "image": record.get("image"),
    })
    if alias:
        set_alias(store, name, alias, card["version"])
    return {**card, "uri": store.url(model_version_prefix(name, card["version"]))}
