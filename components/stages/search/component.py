"""KFP component: hyperparameter search, on Katib (cluster) or Optuna (local), one spec for both.

It takes the featurize step's featurizer artifact: the dataset version comes from it, and every
trial that keeps the step's feature settings reads the encoding the step published to the store's
feature cache (trials run in their own pods, so they cannot read the step's artifact files)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Search hyperparameters: a Katib Experiment on the cluster (trials on GPU nodes) or Optuna locally, the same spec"
    " either way",
    ("best_params", "best_value", "best_run_id"),
    summary="Trials, best value, seconds",
)
def tune_op(
    backend: str,
    store: str,
    featurizer: Input[Artifact],
    config: dict,
    split_config: dict,
    features_config: dict,
    cluster_config: dict,
    run_id: str,
    trials: Output[Artifact],
    leaderboard: Output[Markdown],
    summary: Output[Metrics],
) -> NamedTuple("TuneOutputs", best_params=dict, best_value=float, best_run_id=str):
    import json
    from collections import namedtuple

    from components.common.config import merged_config
    from components.common.logs import StepLog
    from components.stages.search.backends import run_search

    dataset, version = featurizer.metadata["dataset"], featurizer.metadata["version"]
    config = merged_config(config, split=split_config, features=features_config,
                                    cluster=cluster_config)
    result = run_search(backend, store, dataset, version, config, run_id, log=StepLog("search", run_id))
    with open(trials.path, "w") as handle:
        json.dump(result["trials"], handle, indent=2)
    with open(leaderboard.path, "w") as handle:
        handle.write(result["leaderboard"])
    summary.log_metric("best_value", result["best_value"])
    summary.log_metric("trials", len(result["trials"]))
    summary.log_metric("seconds", result["seconds"])
    outputs = namedtuple("TuneOutputs", ["best_params", "best_value", "best_run_id"])
    return outputs(result["best_params"], result["best_value"], result["best_run_id"])
