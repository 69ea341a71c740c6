"""Search: one spec validated up front; Katib Experiment from the SDK models; the launcher's
semantics; the local Optuna backend running real trial processes."""

from __future__ import annotations

import copy
import io
import json
import math
from typing import Any

import pytest
import yaml

from components.common import audit
from components.common.config import ClusterConfig
from components.common.errors import SearchFailed, SpecError
from components.common.logs import StepLog
from components.composition.config import ConveyorConfig
from components.stages.search.katib import build_experiment, validate_experiment
from components.stages.search.katib_launcher import SPEC_HASH_ANNOTATION, launch
from components.stages.search.spec import parse_spec
from components.tracking.runs import read_run
from tests.standins.kubernetes.objects import CustomObjects

BASE = {"algorithm": "tpe", "max_trials": 4, "parallel_trials": 2,
        "parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1, "log": True},
                       {"name": "embed_dim", "type": "discrete", "values": [8, 16]}]}


def with_(**changes):
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


@pytest.mark.parametrize("raw, message", [
    (with_(algorithm="bayes"), "search: algorithm 'bayes' is unknown; expected one of"),
    (with_(parameters=[{"name": "lr", "type": "double", "min": 1, "max": 0.1}]),
     "search.parameters.0: lr: min 1.0 > max 0.1"),
    (with_(parameters=[{"name": "embed_dim", "type": "categorical", "values": []}]),
     "search.parameters.0: embed_dim: a categorical parameter needs a non-empty values list"),
    (with_(objective={"metric": "acuracy"}), "search.objective: metric 'acuracy' is not reported by training"),
    (with_(objective={"goal": "maximise"}), "search.objective.goal: Input should be 'maximize' or 'minimize'"),
    (with_(parameters=[{"name": "learning_rate", "type": "double", "min": 0.1, "max": 1}]),
     "search.parameters: parameter 'learning_rate': train has no field 'learning_rate'"),
    (with_(parallel_trials=9), "parallel_trials (9) > max_trials (4)"),
    (with_(parameters=[{"name": "lr", "type": "double", "min": 0.0, "max": 1, "log": True}]),
     "a log-scale range needs min > 0"),
    (with_(algorith="tpe"), "search.algorith: Extra inputs are not permitted"),
    (with_(objective={"cv_folds": 3}), "a cross-validated objective (objective.cv_folds) arrives once, after training"),
    (with_(objective={"metric": "loss", "goal": "minimize", "cv_folds": 3}, early_stopping={"algorithm": "none"}),
     "a cross-validated objective is accuracy or macro_f1"),
    (with_(parameters=[{"name": "dropout", "type": "double", "min": 1.5, "max": 2.0}]),
     "search.parameters: parameters: train.dropout: Input should be less than 1"),
])
def test_a_bad_spec_is_refused_naming_the_field(raw, message):
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)


def test_experiment_carries_gpu_tolerations_collector_and_medianstop():
    spec = parse_spec(with_(early_stopping={"algorithm": "medianstop", "min_trials_required": 2, "start_step": 2}))
    cluster = ClusterConfig(gpus_per_trial=2, gpu_quota=8, node_selector={"pool": "gpu"},
                            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    exp = build_experiment(spec, run_id="Run_42", dataset="toy", version="v1", store="s3://b", cluster=cluster)
    validate_experiment(exp)
    assert exp["apiVersion"] == "kubeflow.org/v1beta1" and exp["kind"] == "Experiment"
    assert exp["metadata"]["name"].startswith("run-42-")
    s = exp["spec"]
    assert s["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert s["earlyStopping"] == {"algorithmName": "medianstop", "algorithmSettings": [
        {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}]}
    assert s["parameters"][0] == {"name": "lr", "parameterType": "double",
                                  "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"}}
    assert s["parameters"][1]["feasibleSpace"] == {"list": ["8", "16"]}
    pod = s["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "--set" in container["command"] and "lr=${trialParameters.lr}" in container["command"]
    assert "${trialParameters.trialName}" in container["command"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Same inputs, same name (retries adopt); another spec, another name.
    again = build_experiment(spec, run_id="Run_42", dataset="toy", version="v1", store="s3://b", cluster=cluster)
    assert again["metadata"]["name"] == exp["metadata"]["name"]
    other = build_experiment(parse_spec(with_(max_trials=3)), run_id="Run_42", dataset="toy", version="v1",
                             store="s3://b", cluster=cluster)
    assert other["metadata"]["name"] != exp["metadata"]["name"]

    pytorch = build_experiment(spec, run_id="r", dataset="toy", version="v1", store="s3://b",
                               cluster=cluster.model_copy(update={"trial_kind": "PyTorchJob"}))
    validate_experiment(pytorch)
    assert pytorch["spec"]["trialTemplate"]["trialSpec"]["kind"] == "PyTorchJob"
    assert "Succeeded" in pytorch["spec"]["trialTemplate"]["successCondition"]


def test_unknown_fields_in_a_manifest_are_rejected_with_their_path():
    exp = build_experiment(parse_spec(BASE), run_id="r", dataset="toy", version="v", store="s3://b",
                           cluster=ClusterConfig())
    bad = copy.deepcopy(exp)
    bad["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(SpecError, match=r"containers\[0\]: unknown field 'resource' in V1Container"):
        validate_experiment(bad)
    bad = copy.deepcopy(exp)
    bad["spec"]["parallelTrialCount"] = "2"
    with pytest.raises(SpecError, match="parallelTrialCount: expected int"):
        validate_experiment(bad)


class FakeExperiments(CustomObjects):
    """The Experiment API in memory: a status that changes, and the trials."""

    def __init__(self, outcome: str = "Succeeded", existing: dict | None = None):
        super().__init__(existing)
        self.outcome = outcome

    def watch(self, name, namespace, timeout_s):
        self.waited = timeout_s
        if timeout_s <= 0:
            return
        obj = self.stored(name, namespace)
        yield {**obj, "status": {"conditions": [{"type": "Running", "status": "True"}]}}
        if self.outcome == "timeout":
            return
        if self.outcome == "budget":  # still running when the budget ends; one trial has finished
            obj["status"] = {"conditions": [{"type": "Running", "status": "True"}],
                             "currentOptimalTrial": self.optimal(name)}
            return
        cond = {"type": self.outcome, "status": "True", "reason": "ExperimentMaxTrialsReached" if
                self.outcome == "Succeeded" else "ExperimentFailed", "message": "done" if
                self.outcome == "Succeeded" else "too many failed trials"}
        obj["status"] = {"conditions": [cond], "currentOptimalTrial": self.optimal(name)}
        yield obj

    @staticmethod
    def optimal(name):
        return {"bestTrialName": f"{name}-abc", "parameterAssignments": [{"name": "lr", "value": "0.02"},
                                                                         {"name": "embed_dim", "value": "16"}],
                "observation": {"metrics": [{"name": "accuracy", "max": "0.97", "latest": "0.96"}]}}

    def list_trials(self, name, namespace):
        return [{"metadata": {"name": f"{name}-abc"}, "spec": {"parameterAssignments": [
            {"name": "lr", "value": "0.02"}]}, "status": {"conditions": [{"type": "Succeeded", "status": "True"}],
                                                           "observation": {"metrics": [{"name": "accuracy",
                                                                                        "latest": "0.96"}]}}}]


def _experiment(**spec_changes) -> tuple[dict, Any]:
    spec = parse_spec(with_(**spec_changes))
    return build_experiment(spec, run_id="r1", dataset="toy", version="v", store="s3://b",
                            cluster=ClusterConfig()), spec


def test_launcher_creates_waits_and_returns_typed_best_params():
    manifest, spec = _experiment()
    api = FakeExperiments()
    out = launch(api, manifest, spec, ClusterConfig(), log=lambda _m: None)
    assert api.created == [manifest["metadata"]["name"]] and api.deleted == []
    assert out.best_params == {"lr": 0.02, "embed_dim": 16} and out.best_value == 0.97 and not out.adopted
    assert out.trials[0]["params"] == {"lr": 0.02} and out.trials[0]["condition"] == "Succeeded"


def test_launcher_adopts_same_spec_and_refuses_another():
    manifest, spec = _experiment()
    api = FakeExperiments(existing=copy.deepcopy(manifest))
    assert launch(api, manifest, spec, ClusterConfig(), log=lambda _m: None).adopted and api.created == []
    clash = copy.deepcopy(manifest)
    clash["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "0" * 64
    with pytest.raises(SpecError, match="exists with another spec"):
        launch(FakeExperiments(existing=clash), manifest, spec, ClusterConfig(), log=lambda _m: None)


@pytest.mark.parametrize("outcome, message", [("Failed", "failed: ExperimentFailed: too many failed trials"),
                                              ("timeout", "did not finish within")])
def test_launcher_deletes_the_experiment_on_failure_and_timeout(outcome, message):
    manifest, spec = _experiment()
    api = FakeExperiments(outcome=outcome)
    with pytest.raises(SearchFailed, match=message):
        launch(api, manifest, spec, ClusterConfig(), timeout_s=5, log=lambda _m: None)
    assert api.deleted == [manifest["metadata"]["name"]]  # no GPU trial left running


def test_katib_budget_takes_the_best_finished_trial_and_stops_the_rest():
    manifest, spec = _experiment(timeout_s=600)
    api = FakeExperiments(outcome="budget")
    out = launch(api, manifest, spec, ClusterConfig(), log=lambda _m: None)
    assert api.waited == 600  # the search budget, not the cluster's 6 h guard
    assert out.reason == "BudgetExhausted" and out.best_params == {"lr": 0.02, "embed_dim": 16}
    assert api.deleted == [manifest["metadata"]["name"]]  # running trials stopped with the experiment

    # A retried step adopts its experiment: the budget counts from the experiment's creation.
    import datetime as dt

    old = copy.deepcopy(manifest)
    old["metadata"]["creationTimestamp"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    old["status"] = {"conditions": [{"type": "Running", "status": "True"}],
                     "currentOptimalTrial": FakeExperiments.optimal(manifest["metadata"]["name"])}
    api = FakeExperiments(existing=old)
    out = launch(api, manifest, spec, ClusterConfig(), log=lambda _m: None)
    assert out.adopted and api.waited <= 0 and out.reason == "BudgetExhausted" and api.deleted


def test_quota_is_checked_before_anything_is_created():
    manifest, spec = _experiment(parallel_trials=3)
    api = FakeExperiments()
    with pytest.raises(SpecError, match=r"3\) x cluster.nodes \(1\) x cluster.gpus_per_trial \(2\) = 6 GPUs exceeds "
                                        r"cluster.gpu_quota \(4\)"):
        launch(api, manifest, spec, ClusterConfig(gpus_per_trial=2, gpu_quota=4), log=lambda _m: None)
    # A TrainJob trial takes a GPU on each of its nodes: 3 trials x 2 nodes x 1 GPU > 4.
    with pytest.raises(SpecError, match=r"= 6 GPUs exceeds cluster.gpu_quota \(4\)"):
        launch(api, manifest, spec, ClusterConfig(trial_kind="TrainJob", nodes=2, gpus_per_trial=1, gpu_quota=4),
               log=lambda _m: None)
    assert api.created == []


@pytest.mark.slow  # make test-slow: ~30 s; make run's search runs two trials at a time
def test_local_search_runs_parallel_trial_processes(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=3).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=4, parallel_trials=2,
                          early_stopping={"algorithm": "none"})
    lines = io.StringIO()
    result = run_search("local", file_store.uri, "toy", version, cfg, "search-1",
                        log=StepLog("search", "search-1", stream=lines, fmt="json"))
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    kinds = [e["fields"]["event"] for e in events]
    # per-trial progress: the start, each trial started and finished (with the best so far), the end
    assert kinds[0] == "search_started" and kinds[-1] == "search_finished"
    assert kinds.count("trial_started") == 4 and kinds.count("trial_finished") == 4
    finished = [e["fields"] for e in events if e["fields"]["event"] == "trial_finished"]
    assert [f["done"] for f in finished] == [1, 2, 3, 4] and finished[-1]["eta_s"] == 0
    assert finished[-1]["best_value"] == result["best_value"]
    assert all(e["step"] == "search" and e["run_id"] == "search-1" for e in events)
    assert len(result["trials"]) == 4 and all(t["state"] == "succeeded" for t in result["trials"]), \
        [(t["run_id"], t["state"], t["error"]) for t in result["trials"]]
    assert result["best_value"] == max(t["value"] for t in result["trials"])
    assert set(result["best_params"]) == {"lr", "embed_dim"} and "**best**" in result["leaderboard"]
    assert len({t["run_id"] for t in result["trials"]}) == 4  # each trial is its own training run
    # The best trial keeps its model; the others keep their records and metrics, not their files.
    best = result["best_run_id"]
    assert file_store.exists(f"runs/{best}/model/weights.pt") and not file_store.exists(f"runs/{best}/checkpoint.pt")
    for trial in result["trials"]:
        if trial["run_id"] != best:
            record = read_run(file_store, trial["run_id"])
            assert not file_store.list(f"runs/{trial['run_id']}/") and record["history"]
            assert record["artifacts"]["weights"] is None and best in record["files_removed"]
    [entry] = [e for e in audit.read_entries(file_store) if e["event"] == "trial_files_removed"]
    assert sorted(entry["details"]["runs"]) == sorted(t["run_id"] for t in result["trials"] if t["run_id"] != best)

    cfg["search"] = with_(algorithm="grid", max_trials=4, parallel_trials=2,
                          parameters=[{"name": "embed_dim", "type": "discrete", "values": [8, 16]}])
    grid = run_search("local", file_store.uri, "toy", version, cfg, "grid-1", log=lambda _m: None)
    assert sorted(t["params"]["embed_dim"] for t in grid["trials"]) == [8, 16]  # the grid, once each


def test_automl_grid_over_feature_groups_and_families_shows_each_choice(tmp_path, file_store):
    """Feature selection is part of the search: a configuration may drop the word or the character
    n-gram group; the leaderboard shows each group choice and model family with its scores."""
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=2).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="grid", max_trials=4, parallel_trials=2, early_stopping={"algorithm": "none"},
                          parameters=[
                              {"name": "features.word_ngrams", "type": "categorical", "values": [[1, 2], []]},
                              {"name": "features.char_ngrams", "type": "categorical", "values": [[3, 4]]},
                              {"name": "family", "type": "categorical", "values": ["embedding_bag", "cnn"]}])
    result = run_search("local", file_store.uri, "toy", version, cfg, "automl-1", log=lambda _m: None)
    combos = {(str(t["params"]["features.word_ngrams"]), t["params"]["family"]) for t in result["trials"]}
    assert combos == {("[1, 2]", "embedding_bag"), ("[1, 2]", "cnn"), ("[]", "embedding_bag"), ("[]", "cnn")}
    assert all(t["state"] == "succeeded" for t in result["trials"])
    board = result["leaderboard"]
    assert "Effect of `features.word_ngrams`" in board and "Effect of `family`" in board
    assert "| [] | 2 |" in board and "| cnn | 2 |" in board
    # the same space on Katib: list values travel as shell-safe (percent-encoded) JSON that the
    # trial's --set decodes back
    experiment = build_experiment(parse_spec(cfg["search"]), run_id="r", dataset="toy", version=version,
                                  store="s3://x", cluster=ClusterConfig())
    spaces = {p["name"]: p["feasibleSpace"] for p in experiment["spec"]["parameters"]}
    assert spaces["features-word_ngrams"]["list"] == ["%5B1,2%5D", "%5B%5D"]
    from components.stages.search.katib_launcher import decode_value

    assert [decode_value(v) for v in spaces["features-word_ngrams"]["list"]] == [[1, 2], []]


def test_a_cross_validated_objective_is_what_both_backends_optimize(tmp_path, file_store):
    """objective.cv_folds: Katib reads cv_accuracy from the trial's metric lines; locally Optuna
    does the same, and the best trial is the best k-fold mean, recorded with its folds."""
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    spec = parse_spec(with_(max_trials=2, objective={"metric": "accuracy", "cv_folds": 3},
                            early_stopping={"algorithm": "none"}))
    exp = build_experiment(spec, run_id="cv", dataset="toy", version="v1", store="s3://b", cluster=ClusterConfig())
    validate_experiment(exp)
    assert exp["spec"]["objective"]["objectiveMetricName"] == "cv_accuracy"
    assert "accuracy" in exp["spec"]["objective"]["additionalMetricNames"] and "earlyStopping" not in exp["spec"]
    command = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--cv-folds") + 1] == "3"

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=2).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=2, parallel_trials=2,
                          objective={"metric": "accuracy", "cv_folds": 3}, early_stopping={"algorithm": "none"})
    result = run_search("local", file_store.uri, "toy", version, cfg, "cv-1", log=lambda _m: None)
    assert all(t["state"] == "succeeded" for t in result["trials"]), result["trials"]
    for trial in result["trials"]:
        record = read_run(file_store, trial["run_id"])
        assert record["cv"]["folds"] == 3 and trial["value"] == record["cv"]["accuracy"]["mean"]
    assert result["best_value"] == max(t["value"] for t in result["trials"])
    assert "cv_accuracy" in result["leaderboard"]


def test_local_budget_stops_starting_trials_and_keeps_the_best_finished(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=1).model_dump(mode="json", exclude_none=True)
    # The budget is sized from this machine's own trial time (a loaded CI runner took > 12 s for
    # one trial): three trials' worth lets at least one finish and stops the rest of the 30.
    cfg["search"] = with_(algorithm="random", max_trials=1, parallel_trials=1, early_stopping={"algorithm": "none"})
    one_trial_s = run_search("local", file_store.uri, "toy", version, cfg, "budget-0", log=lambda _m: None)["seconds"]
    budget = math.ceil(3 * one_trial_s) + 1
    cfg["search"] = with_(algorithm="random", max_trials=30, parallel_trials=1, timeout_s=budget,
                          early_stopping={"algorithm": "none"})
    result = run_search("local", file_store.uri, "toy", version, cfg, "budget-1", log=lambda _m: None)
    states = [t["state"] for t in result["trials"]]
    seen = [(t["state"], t["seconds"], t["error"]) for t in result["trials"]]
    assert "succeeded" in states and len(states) < 30, seen
    # At most the one trial running when the budget ran out is stopped; "stopped" means it was
    # terminated (a trial that exits 0 counts as succeeded), so it did not run on to its end.
    assert set(states) <= {"succeeded", "stopped"} and states.count("stopped") <= 1, seen
    assert result["best_value"] == max(t["value"] for t in result["trials"] if t["state"] == "succeeded")

    cfg["search"] = with_(algorithm="random", max_trials=4, parallel_trials=2, timeout_s=1)
    with pytest.raises(SearchFailed, match=r"budget \(search.timeout_s = 1 s\) ran out before any trial finished "
                                           r"\(2 stopped\)"):
        run_search("local", file_store.uri, "toy", version, cfg, "budget-2", log=lambda _m: None)


def test_failed_trials_count_against_the_limit(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=1).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=3, parallel_trials=1, max_failed_trials=1)
    # Every trial process fails at run time (the version is gone): the search stops at the limit.
    with pytest.raises(SearchFailed, match=r"2 trials failed \(limit 1\).*no version 'deleted-version'"):
        run_search("local", file_store.uri, "toy", "deleted-version", cfg, "fail-1", log=lambda _m: None)


def test_the_default_config_search_spec_is_valid():
    from components.common.config import PROJECT_ROOT
    from components.composition.config import load_config

    for name in ("spamassassin", "tweets"):
        spec = parse_spec(load_config(PROJECT_ROOT / "configs" / f"{name}.yaml").search)
        assert spec.max_trials >= 8 and spec.parallel_trials >= 2
    assert yaml.safe_dump(ConveyorConfig().model_dump(mode="json"))
