"""Evaluation and the gate: champion/challenger on the same rows; a worse candidate is refused."""

from __future__ import annotations

import json

import pytest

from components.common.errors import GateFailed, InputError
from components.stages.evaluate.artifacts import Evaluation
from components.stages.evaluate.core import expected_calibration_error
from components.stages.evaluate.executor import evaluate_candidate
from components.stages.gate.artifacts import Blessing
from components.stages.gate.config import GateConfig
from components.stages.gate.core import decide, gate_markdown, verify_blessing
from components.stages.gate.executor import gate_candidate
from components.stages.registry import store as registry
from components.stages.train.entrypoint import run_training
from tests.support.training_data import held_out_split, ingest_corpus, small_config


def test_ece_of_perfectly_calibrated_and_overconfident_predictions():
    import numpy as np

    probs = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 9 + [1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(probs, np.array([1] * 10)) == pytest.approx(0.9)


def test_no_champion_means_absolute_checks_only():
    metrics = {"accuracy": 0.95, "macro_f1": 0.94, "ece": 0.02, "batch64_latency_ms": 3.0, "slices": {}}
    out = decide(metrics, None, GateConfig(require_infra_validation=False))
    assert out["blessed"] and {c["kind"] for c in out["checks"]} == {"absolute"}
    low = decide({**metrics, "accuracy": 0.5}, None, GateConfig(require_infra_validation=False))
    assert not low["blessed"] and low["reasons"] == ["accuracy: 0.5 vs threshold 0.9"]


def test_a_worse_candidate_is_stopped_at_the_gate_with_reasons(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    good = run_training(file_store, "toy", version, small_config(), "good", emit=lambda _l: None, progress=False)
    registry.set_alias(file_store, "toy-model", "champion",
                       registry.register_run(file_store, "toy-model", good, alias=None)["version"])
    # Deliberately worse: one epoch at a tiny learning rate.
    bad = run_training(file_store, "toy", version, small_config(epochs=1, lr=1e-4), "bad", emit=lambda _l: None,
                       progress=False)
    bad_version = registry.register_run(file_store, "toy-model", bad, alias="candidate")["version"]

    test, described = held_out_split(file_store, "toy", version, small_config().split.model_dump(mode="json"))
    evaluation = evaluate_candidate(file_store, "toy-model", bad_version, test, described)
    assert evaluation.champion and evaluation.rows == evaluation.candidate.rows
    assert evaluation.candidate.accuracy < evaluation.champion.accuracy
    assert set(evaluation.candidate.per_class) == {"ham", "spam"}
    assert len(evaluation.candidate.confusion_matrix) == 2

    decision = gate_candidate(file_store, "toy-model", evaluation, test, GateConfig(min_accuracy=0.5, min_macro_f1=0.3,
                                                                                  max_ece=0.5))
    assert decision.decision == "NOT_BLESSED"
    assert any(r.startswith("accuracy_vs_champion") for r in decision.reasons)
    assert decision.infra_validation["passed"]  # the server answered like offline: only quality failed
    assert "**FAIL**" in gate_markdown(decision)

    evaluation = evaluate_candidate(file_store, "toy-model", registry.resolve_version(file_store, "toy-model",
                                                                                      "champion"),
                                    test, described)
    assert evaluation.champion is None  # the champion against itself is not a comparison


def test_a_champion_this_code_cannot_load_is_named_and_blocks_unless_allowed(own_two_versions):
    store, stable, cand, *_ = own_two_versions
    store.write_bytes(f"models/toy-model/{stable}/featurizer.json", b'{"format": 1}')  # an older, changed file
    dataset = store.read_json(f"models/toy-model/{cand}/model_card.json")["dataset"]
    test, described = held_out_split(store, dataset["name"], dataset["version"])
    evaluation = evaluate_candidate(store, "toy-model", cand, test, described)
    assert evaluation.champion is None and evaluation.champion_unusable["version"] == stable
    assert "sha256" in evaluation.champion_unusable["reason"]
    lenient = GateConfig(min_accuracy=0, min_macro_f1=0, max_ece=1, on_unusable_champion="absolute_only")
    strict = lenient.model_copy(update={"on_unusable_champion": "fail"})
    refused = decide(evaluation.candidate.model_dump(), None, strict, {"matching_share": 1.0, "passed": True},
                     evaluation.champion_unusable)
    assert not refused["blessed"]
    assert refused["reasons"] == [f"champion {stable} cannot be loaded: {evaluation.champion_unusable['reason']} "
                                  "(gate.on_unusable_champion: fail)"]
    allowed = decide(evaluation.candidate.model_dump(), None, lenient, {"matching_share": 1.0, "passed": True},
                     evaluation.champion_unusable)
    assert allowed["blessed"]


def _blessing(accuracy: float, **changes) -> Blessing:
    decision = decide({"accuracy": accuracy, "macro_f1": 0.94, "ece": 0.02, "batch64_latency_ms": 3.0}, None,
                      GateConfig(require_infra_validation=False))
    return Blessing(**{**decision, "model": "m", "candidate": "v1", "champion": None,
                       "dataset": {"name": "d", "version": "x"}, "infra_validation": None, "explanations": None,
                       "cross_validation": None, **changes})


def test_a_rollout_needs_the_gates_blessing_of_this_very_candidate():
    blessing = _blessing(0.95)
    verify_blessing(blessing, "m", "v1")  # BLESSED, and for this candidate: no error
    with pytest.raises(GateFailed, match="the blessing is for m@v1, not m@v2"):
        verify_blessing(blessing, "m", "v2")
    with pytest.raises(GateFailed, match="the blessing is for m@v1, not other@v1"):
        verify_blessing(blessing, "other", "v1")
    refused = _blessing(0.5)
    with pytest.raises(GateFailed, match=r"m@v1 is not blessed \(decision 'NOT_BLESSED', blessed False\): "
                                          r"accuracy: 0.5 vs threshold 0.9"):
        verify_blessing(refused, "m", "v1")


def test_the_blessing_file_round_trips_and_a_tampered_one_is_refused(tmp_path):
    """The file the gate writes reads back as the same blessing; a file whose verdict, flag, checks
    or reasons were changed by hand no longer agrees with itself and stops the rollout."""
    path = tmp_path / "blessing.json"
    refused = _blessing(0.5)
    refused.write(str(path))
    assert Blessing.read(str(path)) == refused
    written = json.loads(path.read_text())
    for tampered, field in (({**written, "decision": "BLESSED"}, "decision 'BLESSED' disagrees with blessed False"),
                            ({**written, "decision": "BLESSED", "blessed": True}, "disagrees with its checks"),
                            ({**written, "checks": [{**c, "passed": True} for c in written["checks"]]},
                             "disagrees with its checks"),
                            ({**written, "extra": 1}, "extra: Extra inputs are not permitted")):
        path.write_text(json.dumps(tampered))
        with pytest.raises(GateFailed, match=f"{path}: not a blessing the gate wrote .*{field}"):
            Blessing.read(str(path))
    path.write_text("{not json")
    with pytest.raises(GateFailed, match="the blessing cannot be read"):
        Blessing.read(str(path))


def test_an_evaluation_file_that_is_not_one_is_refused_naming_the_file_and_field(tmp_path):
    """What the gate step reads: a file that is not JSON, or JSON without the candidate's scores,
    is an InputError that names the file and what is wrong, never a KeyError later."""
    path = tmp_path / "evaluation.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=f"{path}: the evaluation cannot be read"):
        Evaluation.read(str(path))
    path.write_text(json.dumps({"dataset": {"name": "d", "version": "x"}, "rows": 3, "split": {},
                                "champion": None}))
    with pytest.raises(InputError,
                       match=f"{path}: not an evaluation the evaluate step wrote \\(candidate: Field required"):
        Evaluation.read(str(path))
