"""What every stage's config shares: the strict base model, cluster placement, YAML reading and
one way to turn a validation error into a message that names the field.

Stage configs live beside their stages (`components/stages/<stage>/config.py`); the whole file is
assembled in `components.composition.config`, which only entry points import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.common.errors import ConfigError
from components.common.spark import SparkSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "spamassassin.yaml"
Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClusterConfig(Section):
    """Where and how cluster work runs (Katib trials, the train step); ignored by the local backends."""

    namespace: str = "kubeflow-user"
    image: str | None = None  # default: the training image (components/cluster/images.py)
    # What a Katib trial is: a batch Job (one process), a Kubeflow Trainer v2 TrainJob (torchrun on
    # `nodes` x `procs_per_node` processes), or the legacy training-operator PyTorchJob (the same).
    trial_kind: Literal["Job", "TrainJob", "PyTorchJob"] = "Job"
    # Where the pipeline's train step trains: in its own pod (train.world_size processes under
    # torchrun when above 1), or as a TrainJob of `nodes` x `procs_per_node` processes.
    train_kind: Literal["Pod", "TrainJob"] = "Pod"
    nodes: int = Field(1, ge=1)  # training nodes (pods) of a TrainJob or PyTorchJob
    procs_per_node: int = Field(1, ge=1)  # set explicitly: Trainer's "auto" on a CPU node is one per CPU
    trainer_runtime: str = "torch-distributed"  # the torch runtime TrainJobs reference (Trainer >= 2.2: runtimePatches)
    # Trainer's own runtimes are cluster-wide; the chart can ship a namespaced one (trainer.runtime.enabled)
    trainer_runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    train_timeout_s: int = Field(6 * 3600, ge=60)
    gpus_per_trial: int = Field(1, ge=0)  # per trial pod, and per node of a TrainJob/PyTorchJob
    gpu_quota: int = Field(4, ge=0)  # parallel trials x nodes x GPUs per node may not exceed this
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, str]] = Field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    s3_secret: str = "conveyor-s3"  # Secret with AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    # (and, optional, CONVEYOR_STORE_ENCRYPTION / _KMS_KEY_ID / _SSE_C_KEY: encryption at rest)
    s3_ca_secret: str | None = None  # Secret with ca.crt: the CA of an https S3 endpoint (AWS_CA_BUNDLE)
    # Secret with `token`: the predictors' data-plane token, sent by the staging and release steps
    inference_token_secret: str | None = None
    cpu: str = "2"
    memory: str = "8Gi"
    experiment_timeout_s: int = Field(6 * 3600, ge=60)


class StoreConfig(Section):
    """The object store's protection for `conveyor run` (its embedded S3 server, or the store it is
    pointed at). The steps read it from their environment (components.common.storage): on a cluster
    the chart's s3 values set the same variables, so this section is not in the compiled pipelines."""

    # https for the embedded server, with a certificate made for each start; an external store's
    # scheme comes from AWS_ENDPOINT_URL and its CA from AWS_CA_BUNDLE
    tls: bool = True
    # server-side encryption asked for on every object written: none | sse-s3 | sse-kms (kms_key_id) |
    # sse-c (a key in $CONVEYOR_STORE_SSE_C_KEY; not for the embedded server, whose data outlives a key)
    encryption: Literal["none", "sse-s3", "sse-kms", "sse-c"] = "sse-s3"
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _kms_key(self):
        if self.encryption == "sse-kms" and not self.kms_key_id:
            raise ValueError("store.encryption sse-kms needs store.kms_key_id")
        return self


class SparkConfig(Section):
    """The Spark engine: `local[N]` in the step's own process (kfp.local, the CLI), or on a cluster a
    SparkApplication run by the Kubeflow Spark Operator (>= 2.x) in the component image. Shared by
    the ingest engine and the featurize step's vocabulary fit (which runs `local[N]` in its pod)."""

    master: str = "local[2]"  # local runs only; the operator sets the cluster's
    executors: int = Field(2, ge=1)
    executor_cores: int = Field(2, ge=1)
    executor_memory: str = "4g"
    driver_cores: int = Field(1, ge=1)
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(64, ge=1)
    spark_version: str = "4.3.0"  # the image's pyspark
    image: str | None = None  # default: the component image (components/cluster/images.py), Spark inside
    service_account: str = "conveyor-spark"  # the chart's; a driver creates its executor pods
    timeout_s: int = Field(4 * 3600, ge=60)
    ttl_s: int = Field(3600, ge=0)  # the operator removes a finished application after this

    def local_settings(self) -> SparkSettings:
        """The session settings of a run in the step's own process (`master`, e.g. local[N])."""
        return SparkSettings(master=self.master, shuffle_partitions=self.shuffle_partitions)


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}", a.get(key, "(unset)"), b.get(key, "(unset)")
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)  # 8 == 8.0: KFP hands every number over as a double


def merged_config(config: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A step's whole config from the pipeline's `config` parameter and the sections that are
    parameters of their own (`split=split_config`, ...): each setting has one place. A section that
    is in both must say the same, else the run is refused naming the first field that differs."""
    merged = dict(config)
    for name, section in sections.items():
        if name in config:
            found = _first_difference(config[name], section, name)
            if found:
                where, in_config, own = found
                raise ConfigError(f"config.{where} is {in_config!r} but {name}_config{where[len(name):]} is {own!r}: "
                                  f"set it in one place, {name}_config (the run's `config` need not repeat it)")
        merged[name] = section
    return merged


def first_validation_error(exc: ValidationError) -> str:
    """The first error of a validation as `field.path: message`, and how many more there are."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def read_json_model(model: type[Model], path: str, error: type[Exception], what: str, written_by: str,
                    consequence: str = "") -> Model:
    """A step's typed output from the JSON file at `path`, or `error` saying what is wrong with it:
    `{path}: {what} cannot be read (...)` or `{path}: not {written_by} (<first bad field>)`."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise error(f"{path}: {what} cannot be read ({exc}){consequence}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: not {written_by} ({first_validation_error(exc)}){consequence}") from None


def describe_validation_error(exc: ValidationError, origin: str) -> str:
    return f"{origin}: {first_validation_error(exc)}"


def validate_section(model: type[Model], raw: Any, origin: str) -> Model:
    """`model` from `raw`, or a ConfigError naming the first bad field under `origin`."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin)) from exc


def read_config_file(path: str | os.PathLike | None = None) -> tuple[dict[str, Any], str]:
    """The config file's top-level mapping (default `$CONVEYOR_CONFIG`, else the bundled file) and
    where it came from; not validated here (each reader validates the sections it uses)."""
    given = path or os.environ.get("CONVEYOR_CONFIG")
    path = Path(given or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        if not given:  # an installed package (an image) has no checkout beside it
            raise ConfigError(f"no config given and the default {path} does not exist here (installed without "
                              "the repository's configs/): pass --config FILE or set CONVEYOR_CONFIG") from exc
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw, str(path)
