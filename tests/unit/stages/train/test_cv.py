"""Cross-validation: folds as a pure function of doc_id, the candidate's k-fold estimate from the
evaluate step, attached to the version, shown by the gate report and `conveyor models show`, and
the gate's check on its lower bound."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from components.common.config import validate_section
from components.common.errors import ConfigError
from components.dataset.schema import DOC_ID_HEX
from components.stages.evaluate.config import EvaluateConfig
from components.stages.evaluate.executor import evaluate_candidate
from components.stages.gate.config import GateConfig
from components.stages.gate.core import decide, gate_markdown
from components.stages.gate.executor import gate_candidate
from components.stages.registry.store import read_cross_validation
from components.stages.split.config import SplitConfig
from components.stages.split.core import assign, folds
from components.stages.train.cv import cv_summary
from tests.integration.test_cli import conveyor
from tests.support.training_data import held_out_split


def test_folds_are_a_pure_function_of_the_doc_id_balanced_and_apart_from_the_split():
    ids = pa.array([hashlib.sha256(str(i).encode()).hexdigest()[:DOC_ID_HEX] for i in range(20_000)])
    a = folds(ids, 5, "salt")
    assert np.array_equal(a, folds(pa.array(ids.to_pylist()[::-1]), 5, "salt")[::-1])  # order does not matter
    assert np.array_equal(a[:100], folds(ids.slice(0, 100), 5, "salt"))  # nor what else is in the table
    assert set(np.unique(a)) == set(range(5)) and np.bincount(a).min() > 0.18 * len(a)
    assert not np.array_equal(a, folds(ids, 5, "other-salt"))
    split = assign(ids, SplitConfig(salt="salt"))
    for code in range(3):  # every split has rows of every fold: folds are not the split in disguise
        assert set(np.unique(a[split == code])) == set(range(5))


def test_the_summary_is_mean_std_and_a_student_t_lower_bound():
    per_fold = [{"accuracy": x, "macro_f1": x} for x in (0.90, 0.92, 0.94)]
    out = cv_summary(per_fold)
    assert out["accuracy"]["mean"] == pytest.approx(0.92) and out["accuracy"]["std"] == pytest.approx(0.02)
    # t(0.95, 2) = 2.919986: 0.92 - 2.919986 * 0.02 / sqrt(3)
    assert out["accuracy"]["lower"] == pytest.approx(0.92 - 2.919986 * 0.02 / 3 ** 0.5, abs=1e-6)


def test_one_fold_is_refused():
    with pytest.raises(ConfigError, match="cv_folds"):
        validate_section(EvaluateConfig, {"cv_folds": 1}, "evaluate")


def test_the_evaluate_step_estimates_the_candidate_by_k_folds_and_the_gate_can_require_its_lower_bound(
        own_two_versions):
    store, _stable, cand, *_ = own_two_versions
    card = store.read_json(f"models/toy-model/{cand}/model_card.json")
    dataset = card["dataset"]
    test, described = held_out_split(store, dataset["name"], dataset["version"])
    evaluation = evaluate_candidate(store, "toy-model", cand, test, described, cv_folds=3)
    cv = evaluation.candidate.cv
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    pool = sum(f["rows"] for f in cv["per_fold"])
    assert all(f["train_rows"] == pool - f["rows"] for f in cv["per_fold"])
    assert pool > test.num_rows  # the train and validation splits, not the test split
    assert 0.5 < cv["accuracy"]["lower"] <= cv["accuracy"]["mean"] <= 1
    assert read_cross_validation(store, "toy-model", cand) == cv
    again = evaluate_candidate(store, "toy-model", cand, test, described, cv_folds=3).candidate.cv
    assert again == cv  # same version, same folds, same seed: the same estimate

    strict = GateConfig(require_infra_validation=False, min_cv_accuracy_lower=1.0)
    refused = gate_candidate(store, "toy-model", evaluation, test, strict)
    assert not refused.blessed and any(r.startswith("cv_accuracy_lower") for r in refused.reasons)
    report = gate_markdown(refused)
    assert "Cross-validation: 3 folds" in report and f"{cv['accuracy']['lower']:.4f}" in report
    blessed = decide(evaluation.candidate.model_dump(), None, GateConfig(require_infra_validation=False,
                                                               min_cv_accuracy_lower=0.5))
    assert any(c["check"] == "cv_accuracy_lower" and c["passed"] for c in blessed["checks"])
    no_cv = decide({**evaluation.candidate.model_dump(), "cv": None}, None, strict)
    assert "no cross-validation (evaluate.cv_folds is 0)" in no_cv["reasons"]

    shown = conveyor("models", "show", "toy-model", cand, "--store", store.uri, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["cross_validation"]["accuracy"] == cv["accuracy"]
