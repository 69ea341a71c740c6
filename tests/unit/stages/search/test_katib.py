"""The Katib Experiment builder: GPU placement, the collector, medianstop; strict manifests."""

from __future__ import annotations

import copy

import pytest

from components.common.config import ClusterConfig
from components.common.errors import SpecError
from components.stages.search.katib import build_experiment, validate_experiment
from components.stages.search.spec import parse_spec
from tests.support.search_specs import BASE, with_


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


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["algorithm"]["algorithmSettings"].append({"name": "n_startup_trials", "value": "4"}),
     "unknown setting n_startup_trials for algorithm tpe"),  # Hyperopt serves tpe
    (lambda s: s["algorithm"]["algorithmSettings"].append({"name": "gamma", "value": "1.5"}),
     r"gamma should be in the range of \(0, 1\)"),
    (lambda s: s["algorithm"].update(algorithmName="multivariate-tpe", algorithmSettings=[
        {"name": "n_startup_trials", "value": "-1"}]), "n_startup_trials should be greate or equal than zero"),
    (lambda s: s["algorithm"].update(algorithmName="cmaes"),
     "CMA-ES only supports two or more dimensional continuous search space"),
    (lambda s: s["earlyStopping"]["algorithmSettings"].append({"name": "start_step", "value": "0"}),
     r"start_step must be greater or equal than one \(>=1\)"),
    (lambda s: s["earlyStopping"]["algorithmSettings"].append({"name": "patience", "value": "2"}),
     "unknown setting patience for algorithm medianstop"),
])
def test_settings_the_suggestion_services_would_refuse_are_refused_before_sending(change, message):
    exp = build_experiment(parse_spec(BASE), run_id="r", dataset="toy", version="v", store="s3://b",
                           cluster=ClusterConfig())
    validate_experiment(exp)
    bad = copy.deepcopy(exp)
    change(bad["spec"])
    with pytest.raises(Exception, match=message):
        validate_experiment(bad)


def test_cmaes_needs_two_numeric_parameters_on_both_backends():
    with pytest.raises(SpecError, match="cmaes needs two or more double/int parameters"):
        parse_spec(with_(algorithm="cmaes", parameters=[{"name": "lr", "type": "double", "min": 0.001, "max": 0.1},
                                                         {"name": "embed_dim", "type": "discrete", "values": [8]}]))


def test_grid_experiments_ask_for_no_more_trials_than_katibs_grid_has_points():
    spec = parse_spec(with_(algorithm="grid", max_trials=10, parallel_trials=4, parameters=[
        {"name": "dropout", "type": "double", "min": 0.0, "max": 0.3, "step": 0.1},
        {"name": "embed_dim", "type": "discrete", "values": [8, 16]}]))
    # Katib's arange(min, max + step, step) ends at 0.30000000000000004, above max: dropped, on both
    assert spec.grid()["dropout"] == [0.0, 0.1, 0.2] and spec.grid_size() == 6
    exp = build_experiment(spec, run_id="g", dataset="toy", version="v", store="s3://b", cluster=ClusterConfig())
    validate_experiment(exp)
    assert (exp["spec"]["maxTrialCount"], exp["spec"]["parallelTrialCount"]) == (6, 4)
    exp["spec"]["maxTrialCount"] = 7
    with pytest.raises(Exception, match="Max Trial Count: 7 > all possible search combinations: 6"):
        validate_experiment(exp)
