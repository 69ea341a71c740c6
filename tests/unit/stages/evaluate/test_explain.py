"""Explanations: exact occlusion effects (the pure core, checked against a scorer whose answers are
known), the global importance the evaluate step attaches to a version, the gate report's examples
and `conveyor models show`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.stages.evaluate.executor import evaluate_candidate
from components.stages.evaluate.explain import (
    ExplainLimits,
    explain_tokens,
    global_importance,
    log_odds,
    occluded_tokens,
)
from components.stages.gate.config import GateConfig
from components.stages.gate.core import gate_markdown
from components.stages.gate.executor import gate_candidate
from components.stages.registry.store import read_explanations
from tests.integration.test_cli import conveyor
from tests.support.training_data import HAM_WORDS, SPAM_WORDS, held_out_split

LABELS = ["ham", "spam"]
WEIGHTS = {"free": 2.0, "cash": 1.0, "meeting": -1.5}


def logistic_score(docs: list[list[str]]) -> np.ndarray:
    """log p: p(spam) = sigmoid(z), z the sum of the weights of the distinct tokens present, so the
    log-odds of spam are z and every effect is known by hand."""
    rows = []
    for tokens in docs:
        z = sum(WEIGHTS.get(t, 0.0) for t in set(tokens))
        rows.append([-math.log1p(math.exp(z)), -math.log1p(math.exp(-z))])
    return np.array(rows)


def test_an_effect_is_the_log_odds_change_when_every_occurrence_of_the_token_is_removed():
    result = explain_tokens(["free", "cash", "free", "meeting", "the"], logistic_score, LABELS)
    effects = {t["token"]: t["effect"]["spam"] for t in result["tokens"]}
    assert effects == pytest.approx({"free": 2.0, "cash": 1.0, "meeting": -1.5, "the": 0.0}, abs=1e-6)
    assert {t["token"]: t["effect"]["ham"] for t in result["tokens"]}["free"] == pytest.approx(-2.0, abs=1e-6)
    assert result["probabilities"]["spam"] == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-9)
    assert result["label"] == "spam" and result["complete"] and result["distinct_tokens"] == 4
    assert [t["token"] for t in result["top_tokens"]["spam"]] == ["free", "cash"]  # only tokens that raise it
    assert [t["token"] for t in result["top_tokens"]["ham"]] == ["meeting"]
    assert {t["token"]: t["count"] for t in result["tokens"]}["free"] == 2


def test_log_odds_keep_their_resolution_where_probabilities_saturate():
    # p(spam) = 1 - 1e-12: as a probability it is 1.0 in float32; its log-odds are still ~27.6
    odds = log_odds(np.array([[math.log(1e-12), math.log1p(-1e-12)]]))
    assert odds[0] == pytest.approx([-27.631, 27.631], abs=1e-3)


def test_cost_is_bounded_by_occluding_only_the_most_frequent_tokens():
    tokens = ["a", "b", "b", "c", "c", "c", "d"]
    assert occluded_tokens(tokens, 2) == ["b", "c"]  # most frequent, reported in first-occurrence order
    assert occluded_tokens(tokens, 10) == ["a", "b", "c", "d"]
    calls = []

    def counting(docs):
        calls.append(len(docs))
        return logistic_score(docs)

    result = explain_tokens(tokens, counting, LABELS, ExplainLimits(max_tokens=2))
    assert sum(calls) == 3 and result["explained_tokens"] == 2 and not result["complete"]
    with pytest.raises(ValueError):
        ExplainLimits(max_tokens=0)


def test_global_importance_ranks_the_tokens_that_carry_each_class():
    docs = [["free", "x"], ["cash", "y"], ["meeting", "x"], ["free", "cash"], ["meeting", "y"], ["free"],
            ["meeting"], ["cash"]]
    result = global_importance(docs, logistic_score, LABELS, min_documents=3)
    assert [t["token"] for t in result["per_class"]["spam"]] == ["free", "cash"]
    assert [t["token"] for t in result["per_class"]["ham"]] == ["meeting"]
    assert result["documents"] == 8 and all(t["documents"] >= 3 for t in result["per_class"]["spam"])
    assert "x" not in {t["token"] for items in result["per_class"].values() for t in items}  # no effect at all


def test_evaluate_attaches_importance_to_the_version_and_the_gate_report_shows_examples(own_two_versions):
    store, _stable, cand, *_ = own_two_versions
    dataset = store.read_json(f"models/toy-model/{cand}/model_card.json")["dataset"]
    test, described = held_out_split(store, dataset["name"], dataset["version"])
    evaluation = evaluate_candidate(store, "toy-model", cand, test, described)
    explanations = evaluation.candidate.explanations
    spam_top = [t["token"] for t in explanations["importance"]["per_class"]["spam"][:5]]
    ham_top = [t["token"] for t in explanations["importance"]["per_class"]["ham"][:5]]
    # the toy corpus is spam words vs ham words plus shared filler: the model must rely on the former
    assert len(set(spam_top) & set(SPAM_WORDS)) >= 4 and len(set(ham_top) & set(HAM_WORDS)) >= 4, (spam_top, ham_top)
    assert {e["label"] for e in explanations["examples"] if e["label"] == e["predicted"]} == {"ham", "spam"}
    attached = read_explanations(store, "toy-model", cand)
    assert attached["per_class"] == explanations["importance"]["per_class"]
    assert attached["dataset"] == {"name": dataset["name"], "version": described["version"]}

    decision = gate_candidate(store, "toy-model", evaluation, test, GateConfig(require_infra_validation=False))
    report = gate_markdown(decision)
    assert "What the candidate relies on" in report and f"`{spam_top[0]}`" in report
    assert report.count("| ham |") + report.count("| spam |") >= 2 + len(explanations["examples"])

    shown = conveyor("models", "show", "toy-model", cand, "--store", store.uri, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["explanations"]["per_class"] == attached["per_class"]
