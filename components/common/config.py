"""One typed config for every stage.

A YAML file (default `configs/spamassassin.yaml`, or `CONVEYOR_CONFIG`) is validated into these
models; each stage reads only its own section. Defaults make `conveyor run` work unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from components.canary.analysis import CanaryConfig
from components.common.errors import ConfigError
from components.deploy.config import DeployConfig
from components.gate.core import GateConfig
from components.monitor.config import MonitorConfig

FORMATS = ("auto", "email", "csv", "jsonl", "parquet", "text")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "spamassassin.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSettings(Section):
    """How raw files are read and labelled."""

    format: Literal["auto", "email", "csv", "jsonl", "parquet", "text"] = "auto"
    text_col: str = "text"
    label_col: str = "label"
    # Tabular sources: the column naming each row's group; default is the file's stem.
    source_col: str | None = None
    # Folder sources: glob patterns on file names.
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    # Text encoding of CSV/JSONL/text files (emails declare their own charsets).
    encoding: str = "utf-8"
    # Raw label (or folder name) -> label, e.g. SpamAssassin's group folders -> ham/spam.
    label_map: dict[str, str] = Field(default_factory=dict)
    # Assign `source` by keyword (first match wins) for corpora without natural groups. Written as
    # a mapping in YAML; kept as an ordered list of (source, keywords) because the order decides
    # ties and a mapping's order does not survive KFP's parameter (protobuf Struct) encoding.
    source_keywords: list[tuple[str, list[str]]] = Field(default_factory=list)

    @field_validator("source_keywords", mode="before")
    @classmethod
    def _ordered_rules(cls, value):
        return list(value.items()) if isinstance(value, dict) else value
    # Keep only rows whose source (after keyword rules) is listed; the rest are quarantined as
    # `not_selected`. Set per collection by data.reference_select / data.production_select.
    select_sources: list[str] | None = None


class CleaningConfig(Section):
    """What a valid row is. Part of the dataset version id: change it and the version changes."""

    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(100_000, ge=1)
    labels: list[str] | None = None  # None: any non-empty label is accepted
    strip_whitespace: bool = True
    unicode_normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    dedup_against_parent: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> CleaningConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars})")
        if self.labels is not None and not self.labels:
            raise ValueError("labels: give at least one label, or leave it out to accept any")
        return self


class DataConfig(Section):
    dataset: str = "spamassassin"
    # Sources for the reference (training) data and the later production batch.
    reference: list[str] = Field(default_factory=list)
    production: list[str] = Field(default_factory=list)
    source: SourceSettings = Field(default_factory=SourceSettings)
    # Collections cut from the same files by source/topic (e.g. one CSV of many topics): the
    # sources each collection keeps. None keeps every row.
    reference_select: list[str] | None = None
    production_select: list[str] | None = None

    def settings_for(self, collection: Literal["reference", "production"]) -> SourceSettings:
        select = self.reference_select if collection == "reference" else self.production_select
        return self.source.model_copy(update={"select_sources": select}) if select else self.source


class SplitConfig(Section):
    """Deterministic train/validation/test assignment by doc_id hash."""

    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    salt: str = "conveyor-split-v1"

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave rows for training (sum < 1)")
        return self


class FeaturesConfig(Section):
    """Text -> token ids for an EmbeddingBag-style model."""

    lowercase: bool = True
    # Feature groups: word n-grams and character n-grams; None drops a group (the search can try
    # either alone, which is how feature selection enters AutoML). At least one group is needed.
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = None  # e.g. [3, 5]; None disables
    kind: Literal["hashing", "vocabulary"] = "hashing"
    num_buckets: int = Field(2**18, ge=16)  # hashing: id space; vocabulary: max size
    min_freq: int = Field(2, ge=1)  # vocabulary only
    max_tokens: int = Field(2000, ge=1)  # per document, to bound memory

    # A dropped group is written as [] (KFP parameters cannot carry null) and read back as None.
    @field_validator("word_ngrams", "char_ngrams", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == [] or value == () else value

    @field_serializer("word_ngrams", "char_ngrams")
    def _none_is_empty(self, value):
        return [] if value is None else list(value)

    @model_validator(mode="after")
    def _ranges(self) -> FeaturesConfig:
        if self.word_ngrams is None and self.char_ngrams is None:
            raise ValueError("word_ngrams and char_ngrams are both null: keep at least one feature group")
        for name in ("word_ngrams", "char_ngrams"):
            rng = getattr(self, name)
            if rng is not None and not 1 <= rng[0] <= rng[1]:
                raise ValueError(f"{name}: expected [min, max] with 1 <= min <= max, got {list(rng)}")
        return self


class TrainParams(Section):
    """Hyperparameters of one training run (the search varies these)."""

    family: Literal["embedding_bag", "cnn"] = "embedding_bag"
    embed_dim: int = Field(64, ge=2, le=4096)
    lr: float = Field(0.01, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(8, ge=1)
    patience: int = Field(2, ge=1)  # epochs without improvement before stopping
    seed: int = 13
    threads: int = Field(1, ge=1)  # CPU threads; results are reproducible for a fixed count
    # cnn only
    channels: int = Field(64, ge=1)
    kernel_sizes: list[int] = Field(default_factory=lambda: [2, 3, 4])
    max_len: int = Field(400, ge=8)


class ReportConfig(Section):
    drift_share: float = Field(0.5, gt=0, le=1)
    max_rows: int = Field(50_000, ge=100)  # rows sampled per side for the Evidently report


class ClusterConfig(Section):
    """Where and how cluster work runs (Katib trials); ignored by the local backends."""

    namespace: str = "kubeflow-user"
    image: str | None = None  # default: the training image (components/images.py)
    trial_kind: Literal["Job", "PyTorchJob"] = "Job"
    gpus_per_trial: int = Field(1, ge=0)
    gpu_quota: int = Field(4, ge=0)  # parallel trials x GPUs per trial may not exceed this
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, str]] = Field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    s3_secret: str = "conveyor-s3"  # Secret with AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    cpu: str = "2"
    memory: str = "8Gi"
    experiment_timeout_s: int = Field(6 * 3600, ge=60)


class ConveyorConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    train: TrainParams = Field(default_factory=TrainParams)
    # Validated by components.search.spec.parse_spec before any trial launches.
    search: dict = Field(default_factory=dict)
    model_name: str = "spam-classifier"
    # After the search: retrain the best configuration (fresh run, full record) or keep the best
    # trial's own model (no extra training; its run record and weights are already in the store).
    best_trial: Literal["retrain", "keep"] = "retrain"
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)


def _describe(exc: ValidationError, origin: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{origin}: {where}: {first['msg']}{more}"


def load_config(path: str | os.PathLike | None = None) -> ConveyorConfig:
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
    return config_from_dict(raw, origin=str(path))


def config_from_dict(raw: dict, origin: str = "config") -> ConveyorConfig:
    try:
        return ConveyorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from exc
