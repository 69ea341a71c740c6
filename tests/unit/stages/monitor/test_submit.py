"""Submitting the retraining run to KFP: the new data and the champion's parameters, once."""

from __future__ import annotations

import pytest

from components.stages.monitor.config import TriggerPolicy
from components.stages.monitor.trigger import decide, record
from tests.support.monitoring import NOW, verdict


class _KfpStandIn:
    """The few KFP client calls the submit step makes (no KFP API server runs here)."""

    def __init__(self):
        from types import SimpleNamespace as NS

        self.NS = NS
        self.runs = []

    def list_runs(self, page_size, sort_by):
        return self.NS(runs=[self.NS(display_name=r["name"], run_id=r["id"]) for r in self.runs])

    def get_pipeline_id(self, name):
        return "pid-1" if name == "conveyor-continuous-training" else None

    def list_pipeline_versions(self, pipeline_id, sort_by, page_size):
        return self.NS(pipeline_versions=[self.NS(pipeline_version_id="vid-3")])

    def get_experiment(self, experiment_name):
        raise ValueError("no such experiment")

    def create_experiment(self, name):
        return self.NS(experiment_id="eid-1")

    def run_pipeline(self, experiment_id, job_name, pipeline_id, version_id, params):
        self.runs.append({"name": job_name, "id": f"run-{len(self.runs)}", "params": params,
                          "ids": (experiment_id, pipeline_id, version_id)})
        return self.NS(run_id=self.runs[-1]["id"])


def test_submit_retraining_passes_new_data_and_champion_params_once(two_versions):
    from components.common.errors import ClusterError
    from components.stages.monitor.submit import submit_retraining
    from components.stages.registry.store import load_card

    store, *_ = two_versions
    client = _KfpStandIn()
    args = ("toy-model", ["s3://raw/new-batch/"], "http://kfp", "conveyor-continuous-training", "conveyor",
            {"train": {"lr": 0.5, "epochs": 1}, "best_trial": "keep"}, {"word_ngrams": 1})
    with pytest.raises(ClusterError, match="no retrain decision recorded"):
        submit_retraining(store, *args, client=client)
    decision = decide(TriggerPolicy(), verdict(True), [], NOW)
    key = record(store, "toy-model", decision)
    try:
        first = submit_retraining(store, *args, client=client)
        again = submit_retraining(store, *args, client=client)  # a retried step adopts its run
        assert first == again == "run-0" and len(client.runs) == 1
        run = client.runs[0]
        assert run["ids"] == ("eid-1", "pid-1", "vid-3") and run["params"]["sources"] == ["s3://raw/new-batch/"]
        champion = load_card(store, "toy-model", "champion")["params"]
        assert run["params"]["config"]["train"]["lr"] == champion["train"]["lr"]  # the champion's configuration
        assert run["params"]["config"]["best_trial"] == "retrain"  # no search, so no trial to keep
        # each setting in one place: the features are the run's features_config, not a copy in config
        assert "features" not in run["params"]["config"]
        from components.stages.featurize.config import FeaturesConfig

        assert FeaturesConfig.model_validate(run["params"]["features_config"]) == \
            FeaturesConfig.model_validate(champion["features"])
        with pytest.raises(ClusterError, match="pipeline 'nope' is not registered"):
            submit_retraining(store, "toy-model", [], "http://kfp", "nope", "conveyor", {}, {},
                              client=_KfpStandIn())
    finally:
        store.delete(key[len(store.uri) + 1:])
