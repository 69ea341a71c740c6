"""The whole config file, assembled from every stage's own section.

A YAML file (default `configs/spamassassin.yaml`, or `CONVEYOR_CONFIG`) is validated into
`ConveyorConfig`; each stage reads only its own section. Defaults make `conveyor run` work
unchanged. This is the composition root: entry points (the CLI, the pipelines, each KFP
component's body, the training process) import it; stage logic takes its own section only.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from components.cluster.deploy_config import DeployConfig
from components.common.config import ClusterConfig, Section, StoreConfig, read_config_file, validate_section
from components.stages.evaluate.config import EvaluateConfig
from components.stages.featurize.config import FeaturesConfig
from components.stages.gate.config import GateConfig
from components.stages.ingest.config import CleaningConfig, DataConfig
from components.stages.monitor.config import MonitorConfig
from components.stages.notify.config import NotifyConfig
from components.stages.release.config import (
    CanaryConfig,
    EnvironmentConfig,
    RolloutConfig,
    check_environments,
    default_environments,
)
from components.stages.report.config import ReportConfig
from components.stages.split.config import SplitConfig
from components.stages.train.config import TrainParams


class ConveyorConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    train: TrainParams = Field(default_factory=TrainParams)
    # Validated by components.stages.search.spec.parse_spec before any trial launches.
    search: dict = Field(default_factory=dict)
    model_name: str = "spam-classifier"
    # After the search: retrain the best configuration (fresh run, full record) or keep the best
    # trial's own model (no extra training; its run record and weights are already in the store).
    best_trial: Literal["retrain", "keep"] = "retrain"
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)  # TLS and encryption at rest (conveyor run)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)  # checks, interval, threshold (every strategy)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)  # canary | bluegreen | ab | shadow
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    # staging, then production: where a blessed candidate goes, in order, and who lets it in
    environments: list[EnvironmentConfig] = Field(default_factory=default_environments)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)  # Alert & Stop webhook

    @field_validator("environments")
    @classmethod
    def _environments(cls, envs: list[EnvironmentConfig]) -> list[EnvironmentConfig]:
        return check_environments(envs)


def load_config(path: str | os.PathLike | None = None) -> ConveyorConfig:
    raw, origin = read_config_file(path)
    return config_from_dict(raw, origin=origin)


def config_from_dict(raw: dict, origin: str = "config") -> ConveyorConfig:
    return validate_section(ConveyorConfig, raw, origin)


# Config sections that are pipeline parameters of their own; the pipelines' `config` parameter
# carries the rest (search, train, best_trial, monitor), so every setting has one place on the
# KFP form (components.common.config.merged_config refuses a run whose copies disagree).
OWN_PARAMETERS = {"data": "sources / dataset / source_settings / engine / spark_config / ingest_workers",
                  "cleaning": "cleaning",
                  "cluster": "cluster_config", "split": "split_config",
                  "features": "features_config", "report": "report_config", "gate": "gate_config",
                  "canary": "canary_config", "rollout": "rollout_config",
                  "environments": "environments", "deploy": "deploy_config",
                  "notify": "notify_config", "model_name": "model_name"}


# Sections no step reads from its parameters: each step's environment carries them (the chart's values).
ENVIRONMENT_SECTIONS = {"store": "CONVEYOR_STORE_ENCRYPTION / AWS_CA_BUNDLE (components.common.storage)"}


def run_config(dump: dict) -> dict:
    """The pipelines' `config` parameter: the config's sections that have no parameter of their own."""
    return {k: v for k, v in dump.items() if k not in OWN_PARAMETERS and k not in ENVIRONMENT_SECTIONS}
