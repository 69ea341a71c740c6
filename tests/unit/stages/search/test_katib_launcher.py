"""The Katib launcher: create or adopt, wait, the best trial, clean-up on failure, timeout and budget, quota first."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.common.config import ClusterConfig
from components.common.errors import SearchFailed, SpecError
from components.stages.search.katib import build_experiment
from components.stages.search.katib_launcher import SPEC_HASH_ANNOTATION, launch
from components.stages.search.spec import parse_spec
from tests.standins.kubernetes.objects import CustomObjects
from tests.support.search_specs import with_


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
