"""Evaluate executor: load the candidate and the champion from the registry and score both on the
test split the split step wrote."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from components.common.errors import ConveyorError, InputError, NotFoundError
from components.common.storage import Store
from components.evaluate.core import evaluate
from components.registry.store import load, resolve_version

COLUMNS = ["doc_id", "text", "label", "source"]


def read_test_split(path: str) -> pa.Table:
    return pq.read_table(path, columns=COLUMNS)


def evaluate_candidate(store: Store, model_name: str, candidate: str, test: pa.Table,
                       data: dict[str, Any]) -> dict[str, Any]:
    """Candidate and current champion (if any) scored on the same rows. `data` names them:
    {"dataset", "version", "split"} as the split step's artifact metadata carries it."""
    where = f"dataset {data['dataset']}@{data['version']}"
    if test.num_rows == 0:
        raise InputError(f"{where} has an empty test split: nothing to evaluate on")
    cand = load(store, model_name, candidate)
    result = {"dataset": {"name": data["dataset"], "version": data["version"]}, "rows": test.num_rows,
              "split": data.get("split") or {},
              "candidate": {"version": cand.card["version"], **evaluate(cand, test)}, "champion": None}
    try:
        champ = load(store, model_name, "champion")
    except NotFoundError:
        return result
    except ConveyorError as exc:  # e.g. a model saved by an older, incompatible featurizer format
        result["champion_unusable"] = {"version": resolve_version(store, model_name, "champion"),
                                       "reason": exc.message}
        return result
    if champ.card["version"] != cand.card["version"]:
        result["champion"] = {"version": champ.card["version"], **evaluate(champ, test)}
    return result
