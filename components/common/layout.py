"""Where everything lives in the store. Every key is built here and nowhere else, so a stage that
reads another stage's output (the registry reading a run's model, the monitor reading the
predictor's logs) names it the same way the writer did.

    datasets/<dataset>/<version>/manifest.json        a dataset version (parts beside it)
    datasets/<dataset>/refs/latest.json                the newest version
    cache/features/<dataset>/<key>/                    split + featurizer + encoded splits
    runs/<run_id>.json, runs/<run_id>/model/<file>     a training run's record and model
    models/<model>/<version>/model_card.json           a registered model version
    models/<model>/<version>/explanations.json         its global token importance (evaluate step)
    models/<model>/<version>/cross_validation.json     its k-fold estimate (evaluate step, evaluate.cv_folds)
    models/<model>/aliases/<alias>.json                champion, candidate, ...
    deployments/<model>/<env>/<finished>-<candidate>.json   a release's record in one environment
    releases/<model>/<version>/replay.parquet          the labelled rows its releases replay
    releases/<model>/<version>/<env>/verification.json   a pre-production environment's verdict
    releases/<model>/<version>/<env>/request.json      an approval request (manual approval)
    releases/<model>/<version>/<env>/decision.json     granted | rejected | expired (written once)
    inference-logs/<model>/<version>/<day>/<id>.parquet  what the predictor answered
    feedback/<model>/<name>.parquet                    delayed labels
    monitoring/<model>/decisions/<stamp>-<action>.json   the retraining trigger's decisions
"""

from __future__ import annotations

import re

from components.common.errors import InputError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def check_name(name: str, kind: str = "dataset") -> str:
    """A dataset or model name, which becomes one path segment of every key under it."""
    if not NAME_RE.match(name):
        raise InputError(f"{kind} name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-'")
    return name


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id):
        raise InputError(f"run id {run_id!r}: use lower-case letters, digits, '.', '_' or '-' (max 128)")
    return run_id


# Dataset versions.
def dataset_prefix(name: str) -> str:
    return f"datasets/{check_name(name)}"


def version_prefix(name: str, version: str) -> str:
    return f"{dataset_prefix(name)}/{version}"


def manifest_key(name: str, version: str) -> str:
    return f"{version_prefix(name, version)}/manifest.json"


def latest_key(name: str) -> str:
    return f"{dataset_prefix(name)}/refs/latest.json"


def feature_cache_prefix(dataset: str, key: str) -> str:
    return f"cache/features/{check_name(dataset)}/{key}"


# Training runs.
def run_record_key(run_id: str) -> str:
    return f"runs/{check_run_id(run_id)}.json"


def run_file_key(run_id: str, file: str) -> str:
    """A run's own files: `model/weights.pt`, `model/featurizer.json`, `checkpoint.pt`."""
    return f"runs/{check_run_id(run_id)}/{file}"


RUNS_PREFIX = "runs/"


# Registered models.
def model_prefix(name: str) -> str:
    return f"models/{check_name(name, 'model')}"


def model_version_prefix(name: str, version: str) -> str:
    return f"{model_prefix(name)}/{version}"


def model_card_key(name: str, version: str) -> str:
    return f"{model_version_prefix(name, version)}/model_card.json"


def model_explanations_key(name: str, version: str) -> str:
    return f"{model_version_prefix(name, version)}/explanations.json"


def alias_prefix(name: str) -> str:
    return f"{model_prefix(name)}/aliases/"


def alias_key(name: str, alias: str) -> str:
    return f"{alias_prefix(name)}{alias}.json"


# Serving and monitoring.
def deployment_record_key(model: str, finished_at: str, candidate: str, env: str = "production") -> str:
    return f"deployments/{check_name(model, 'model')}/{check_name(env, 'environment')}/" \
           f"{finished_at.replace(':', '')}-{candidate}.json"


def deployments_prefix(model: str) -> str:
    return f"deployments/{check_name(model, 'model')}/"


# Environments and approvals.
def release_prefix(model: str, version: str | None = None) -> str:
    return f"releases/{check_name(model, 'model')}/" + (f"{check_name(version, 'version')}/" if version else "")


def replay_rows_key(model: str, version: str) -> str:
    return f"{release_prefix(model, version)}replay.parquet"


def environment_record_key(model: str, version: str, env: str, record: str) -> str:
    """`verification`, `request` or `decision` of one version in one environment."""
    return f"{release_prefix(model, version)}{check_name(env, 'environment')}/{record}.json"


def inference_log_prefix(model: str, version: str | None = None) -> str:
    """All of a model's logged answers, or one version's (`None`: every version)."""
    return f"inference-logs/{model}/" + (f"{version}/" if version else "")


def inference_log_key(model: str, version: str, day: str, name: str) -> str:
    return f"{inference_log_prefix(model, version)}{day}/{name}.parquet"


def feedback_prefix(model: str) -> str:
    return f"feedback/{model}/"


def feedback_key(model: str, name: str) -> str:
    return f"{feedback_prefix(model)}{name}.parquet"


def decisions_prefix(model: str) -> str:
    return f"monitoring/{model}/decisions/"


def decision_key(model: str, stamp: str, action: str) -> str:
    return f"{decisions_prefix(model)}{stamp}-{action}.json"


def ingest_job_result_key(job: str) -> str:
    """Where a cluster ingest job (a SparkApplication's driver) leaves its result for its launcher."""
    return f"jobs/ingest/{check_name(job, 'job')}/result.json"


def featurize_job_result_key(job: str) -> str:
    """Where a cluster featurize job leaves its result (its encoded parts sit beside it until joined)."""
    return f"jobs/featurize/{check_name(job, 'job')}/result.json"


def featurize_staged_key(digest: str, split: str) -> str:
    """A split step's file staged for a cluster featurize job, named by what determines its rows."""
    return f"jobs/featurize/staged/{check_name(digest, 'digest')}/{check_name(split, 'split')}.parquet"


def model_cross_validation_key(name: str, version: str) -> str:
    return f"{model_version_prefix(name, version)}/cross_validation.json"
