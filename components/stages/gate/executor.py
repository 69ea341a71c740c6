"""Gate executor: infra validation (the candidate served by a real model server must answer as it
does offline) plus the pure decision in core.py."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from components.common import audit
from components.common.storage import Store
from components.stages.evaluate.artifacts import Evaluation
from components.stages.evaluate.core import predict_proba
from components.stages.gate.artifacts import Blessing
from components.stages.gate.config import GateConfig
from components.stages.gate.core import decide
from components.stages.registry.store import load
from components.stages.serve.infra import validate_in_server


def gate_candidate(store: Store, model_name: str, evaluation: Evaluation, test: pa.Table,
                   config: GateConfig, sample_rows: int = 32) -> Blessing:
    """Every check, and the blessing: BLESSED only when all pass. Infra validation sends the first
    `sample_rows` texts of the test split to a real model server."""
    candidate, champion = evaluation.candidate, evaluation.champion
    infra = None
    if config.require_infra_validation:
        texts = test.column("text").slice(0, sample_rows).to_pylist()
        infra = infra_validate(store, model_name, candidate.version, texts)
    decision = decide(candidate.model_dump(), champion.model_dump() if champion else None, config, infra,
                      evaluation.champion_unusable)
    blessing = Blessing(**decision, model=model_name, candidate=candidate.version,
                        champion=champion.version if champion else None, dataset=evaluation.dataset,
                        infra_validation=infra, explanations=candidate.explanations,
                        cross_validation=candidate.cv)
    audit.append(store, "gate_decision", {"model": model_name, "version": blessing.candidate},
                 {"decision": blessing.decision, "champion": blessing.champion, "reasons": blessing.reasons})
    return blessing


def infra_validate(store: Store, model_name: str, version: str, texts: list[str]) -> dict[str, Any]:
    loaded = load(store, model_name, version)
    probs, _ = predict_proba(loaded, pa.array(texts, pa.large_string()))
    labels = [loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
    return validate_in_server(f"{model_name}@{version}", store.uri, texts, labels, probs, version)
