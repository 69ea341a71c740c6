"""What every pipeline and component parameter means, in one place.

KFP reads a component's or pipeline's Google-style docstring into the compiled YAML's parameter
`description`s, which the dashboard's run form shows beside each input. `documented` writes that
docstring from the tables below, so a parameter that many steps share (`store`, `model_name`, a
config section) is explained once, and a new parameter without an entry fails at import.
Config sections are described by their model: what the section is for and which fields it takes
(the form shows the defaults themselves).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from components.cluster.deploy_config import DeployConfig
from components.common.config import ClusterConfig, SparkConfig
from components.stages.evaluate.config import EvaluateConfig
from components.stages.featurize.config import FeaturesConfig
from components.stages.gate.config import GateConfig
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.monitor.config import MonitorConfig
from components.stages.notify.config import NotifyConfig
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.report.config import ReportConfig
from components.stages.split.config import SplitConfig

# parameter -> (config file section, model, what the section decides)
SECTIONS: dict[str, tuple[str, type[BaseModel], str]] = {
    "source_settings": ("data.source", SourceSettings, "How raw files are read and labelled (format, columns, "
                        "label map, source selection)"),
    "cleaning": ("cleaning", CleaningConfig, "What a valid row is; every other row is quarantined with its "
                 "reason. Part of the dataset version id"),
    "split_config": ("split", SplitConfig, "Deterministic train/validation/test assignment by doc_id hash"),
    "features_config": ("features", FeaturesConfig, "Text to token ids (word/char n-grams, hashing or vocabulary)"),
    "report_config": ("report", ReportConfig, "The data report (Evidently): drift share that flags the "
                      "dataset, rows sampled"),
    "spark_config": ("data.spark", SparkConfig, "The Spark engine (engine=spark): a SparkApplication run by "
                     "the Spark Operator, its executors and memory"),
    "cluster_config": ("cluster", ClusterConfig, "Where cluster work runs: namespace, trial kind (Job | "
                       "TrainJob | PyTorchJob), GPUs per trial and quota, node selector, tolerations, the "
                       "S3 Secret"),
    "evaluate_config": ("evaluate", EvaluateConfig, "What the evaluate step adds to the held-out test score: "
                        "k-fold cross-validation of the candidate's configuration (cv_folds; 0: off)"),
    "gate_config": ("gate", GateConfig, "The quality gate: absolute floors, largest regression vs the "
                    "champion overall and per slice, infra validation"),
    "canary_config": ("canary", CanaryConfig, "The automated analysis every release strategy uses: steps, "
                      "interval, checks and thresholds, Prometheus queries"),
    "rollout_config": ("rollout", RolloutConfig, "The release strategy: canary | bluegreen | ab | shadow, "
                       "and each one's settings"),
    "deploy_config": ("deploy", DeployConfig, "The InferenceService: name, namespace, KServe mode, runtime, "
                      "resources, replicas"),
    "notify_config": ("notify", NotifyConfig, "Alert & Stop: which events notify; on a cluster the webhook "
                      "URL comes from the Secret named here, never from this parameter"),
    "monitor_config": ("monitor", MonitorConfig, "Monitoring: the window, drift thresholds, live accuracy, "
                       "the retraining trigger's guardrails"),
}

SETTINGS = (
    "The config file's sections that have no parameter of their own: `search` (the search space, "
    "objective, trials, algorithm), `train` (hyperparameters), `best_trial` (retrain | keep) and "
    "`monitor`. Every other section is its own parameter; a copy of one here must say the same, "
    "else the run is refused naming the field")

INGEST_WORKERS = ("engine=local: processes that decode, validate and hash rows in parallel (0: the cores the pod "
                  "may use, its CPU limit included). Any number gives the same dataset version (data.workers)")

PARAMETERS: dict[str, str] = {
    "sources": "Raw data to ingest: s3:// URIs of files or prefixes (s3://bucket/raw/2026-12/), file:// "
               "paths or globs. BEFORE THE FIRST RUN ON A CLUSTER set your own s3:// URIs: the compiled "
               "default names the bundled sample's local folders, which exist only in a checkout "
               "(`conveyor run`), or compile with a config whose data.reference lists them",
    "new_data_sources": "Where the continuous-training run ingests new data from (s3:// URIs or prefixes), "
                        "passed on as its `sources`. Set your production data's location before scheduling",
    "dataset": "Dataset name: versions are content-addressed under <store>/datasets/<dataset>/",
    "store": "Where data, models and records live: s3://bucket[/prefix]. On a cluster the pods read "
             "AWS_ENDPOINT_URL and the keys from the Secret `cluster_config.s3_secret` (the chart's "
             "conveyor-s3); without AWS_ENDPOINT_URL it is AWS S3 in AWS_REGION",
    "reference_version": "Dataset version the data report compares against for drift (\"\": statistics "
                         "only, no drift)",
    "parent": "Parent version of the new dataset version: \"latest\", a version id, or \"none\" (a root "
              "version). Rows already in the parent are deduplicated against it",
    "engine": "Who runs ingest and featurize: local (in the step's pod) | spark (a SparkApplication: "
              "Spark Operator >= 2.x; spark_config)",
    "workers": INGEST_WORKERS,  # the ingest step's name for it
    "ingest_workers": INGEST_WORKERS,  # the pipelines' name for it
    "search_backend": "Hyperparameter search: katib (an Experiment on the cluster, trials on GPU nodes) | "
                      "local (Optuna in the step's pod)",
    "backend": "Hyperparameter search: katib (an Experiment on the cluster) | local (Optuna in this pod)",
    "model_name": "Registered model name: versions, aliases (candidate, staging, production; champion is "
                  "another name for production) and records live under <store>/models/<model_name>/",
    "environments": "Where a blessed candidate goes, in order (config `environments`): each environment's name "
                    "(also its registry alias), approval (auto | manual, production only), approval_ttl_hours, "
                    "its InferenceService and namespace, verify_intervals. The last is production",
    "environment": "The environment this release enters (production, or another in `environments`)",
    "config": SETTINGS,
    "training_config": "The continuous-training run's `config` parameter (search, train, best_trial, "
                       "monitor); the champion's training parameters replace `train` when "
                       "monitor_config.retrain is champion_params",
    "deploy_target": "Where the release runs: kserve (InferenceServices in deploy_config.namespace) | "
                     "local (KServe model servers in the step's pod)",
    "target": "Where the release runs: kserve (InferenceServices) | local (model servers in this pod)",
    "kfp_host": "KFP API endpoint the retraining run is submitted to (in-cluster default: the "
                "ml-pipeline service)",
    "retrain_pipeline": "Name of the registered continuous-training pipeline to submit (upload "
                        "conveyor-continuous-training first)",
    "pipeline_name": "Name of the registered continuous-training pipeline to submit",
    "experiment": "KFP experiment the retraining run is filed under (created when missing)",
    "run_id": "Run id written into every record (the KFP run's id)",
    "version": "Dataset version id (content address) the step reads",
    "candidate": "Registry version of the candidate model",
    "featurizer": "The fitted featurizer (its metadata names the dataset and version)",
    "train": "Training split (Parquet)",
    "validation": "Validation split (Parquet)",
    "test": "Held-out test split (Parquet)",
    "train_features": "Token ids of the training split",
    "validation_features": "Token ids of the validation split",
    "test_features": "Token ids of the test split",
    "best_params": "Parameters of the best trial (`lr`, `embed_dim`, `features.word_ngrams`, ...), typed as "
                   "the training config declares them; {} for a retrain without search",
    "best_run_id": "Run id of the best trial (kept as the model with best_trial: keep); \"\" for none",
    "run_record": "The training run's record: parameters, metrics, data version, model files",
    "evaluation": "The candidate's evaluation vs the champion (overall, per slice, calibration, latency)",
    "blessing": "The gate's BLESSED/NOT_BLESSED record with its reasons, signed for the release step",
    "record": "The record the notification is about (the gate's blessing or the release's outcome)",
    "event": "What happened: not_blessed | staging_failed | awaiting_approval | rolled_back | failed",
    "status": "The pipeline's final status (KFP's exit handler fills it in)",
    "alias": "Registry alias the new version gets",
}

OUTPUTS: dict[str, str] = {
    "result": "Ingest outcome: version id, row counts, manifest and quarantine URIs",
    "counts": "Row counts (read, accepted, quarantined / per split)",
    "manifest_uri": "URI of the version's manifest",
    "quarantine_uri": "URI of the version's quarantined rows (\"\" when none)",
    "report": "The HTML report",
    "verdict": "The verdict as JSON",
    "summary": "Summary metrics",
    "stats": "Featurizer statistics (vocabulary or bucket use, tokens per document)",
    "trials": "Every trial: parameters, state, objective value",
    "leaderboard": "Trials ranked by the objective (Markdown)",
    "best_value": "The best trial's objective value",
    "curve": "Training curve (HTML)",
    "scalars": "Scalar metrics",
    "model": "The registered model's card",
    "model_uri": "Where the model's files live",
    "confusion": "Confusion matrix on the test split",
    "deployment": "The release record: strategy, each analysis interval, decision",
    "outcome": "How the release ended: Promoted | RolledBack | ...",
    "champion": "The production version after the release",
    "verification": "Each pre-production environment's verdict: the checks of every interval on replayed "
                    "labelled traffic, passed or failed, and what entry to production needs next",
    "next": "What follows staging: release (entry to production granted) | awaiting_approval (a person "
            "decides: `conveyor approve|reject`) | failed",
    "notification": "What was sent, and whether it was delivered",
    "decision": "The retraining trigger's decision with its reasons",
    "action": "retrain | wait | insufficient_data",
}


def section_description(parameter: str) -> str:
    where, model, what = SECTIONS[parameter]
    return f"{what}. Config file section `{where}`; fields: {', '.join(model.model_fields)}"


def describe(name: str, overrides: dict[str, str]) -> str:
    if name in overrides:
        return overrides[name]
    if name in SECTIONS:
        return section_description(name)
    if name in PARAMETERS:
        return PARAMETERS[name]
    if name in OUTPUTS:
        return OUTPUTS[name]
    raise KeyError(f"parameter {name!r} has no description: add it to components/composition/parameters.py")


def _is_output(annotation: Any) -> bool:
    """KFP's `Output[T]` is `Annotated[T, OutputAnnotation]` (matched by name: this module stays
    free of kfp, like every module but the component wrappers)."""
    return get_origin(annotation) is Annotated and any(
        getattr(marker, "__name__", "") == "OutputAnnotation" for marker in get_args(annotation)[1:])


def documented(summary: str, outputs: tuple[str, ...] = (), /, **overrides: str) -> Callable[[Any], Any]:
    """Give a component or pipeline function the Google-style docstring KFP compiles into parameter
    descriptions. `outputs` names its return values (`Output` for a single one, or the NamedTuple's
    fields); `Output[...]` artifact parameters are listed with them."""

    def apply(func):
        inputs, returns = [], []
        for name, parameter in inspect.signature(func).parameters.items():
            (returns if _is_output(parameter.annotation) else inputs).append(name)
        lines = [summary, "", "Args:"]
        lines += [f"    {name}: {describe(name, overrides)}" for name in inputs]
        names = returns + list(outputs)
        if names:
            lines += ["", "Returns:"] + [f"    {name}: {describe(name, overrides)}" for name in names]
        func.__doc__ = "\n".join(lines)
        return func

    return apply
