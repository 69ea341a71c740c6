"""What one training run is given: its hyperparameters and the sections training reads (split,
features, train), and how search parameters overlay them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from components.common.config import Section, validate_section
from components.common.errors import ConfigError
from components.stages.featurize.config import FeaturesConfig
from components.stages.split.config import SplitConfig

# Search parameters address config fields; a bare name means a training hyperparameter.
SECTIONS = ("train", "features", "split")


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
    threads: int = Field(1, ge=1)  # CPU threads per process; results are reproducible for a fixed count
    # Training processes (torch DDP under torchrun; 1: one plain process). A local run starts this
    # many; under a launcher (a TrainJob, a trial) the world torchrun reports is recorded instead.
    world_size: int = Field(1, ge=1, le=256)
    # Keep the run's checkpoint after it completes (it only serves a resume of an unfinished run).
    keep_checkpoint: bool = False
    # A checkpoint is written after an epoch once this many seconds have passed since the last one
    # (or the start): a restart loses at most about this much work, and a short run (a search's
    # trials) writes none. 0: after every epoch.
    checkpoint_every_s: float = Field(60.0, ge=0)
    # cnn only
    channels: int = Field(64, ge=1)
    kernel_sizes: list[int] = Field(default_factory=lambda: [2, 3, 4])
    max_len: int = Field(400, ge=8)


class TrainingConfig(Section):
    """The sections of the run's config that training reads (all a Katib trial is given)."""

    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    train: TrainParams = Field(default_factory=TrainParams)

    @classmethod
    def of(cls, run_config: dict[str, Any] | BaseModel, origin: str = "config") -> TrainingConfig:
        """Training's sections of a whole run config (other sections are other stages' to check)."""
        if isinstance(run_config, BaseModel):
            run_config = run_config.model_dump(mode="json")
        return validate_section(cls, {s: run_config[s] for s in SECTIONS if s in run_config}, origin)

    def params(self) -> dict[str, dict[str, Any]]:
        return {s: getattr(self, s).model_dump(mode="json") for s in SECTIONS}


def apply_params(cfg: TrainingConfig, params: dict[str, Any]) -> TrainingConfig:
    """Overlay `name=value` parameters (`lr`, `train.lr`, `features.word_ngrams`) on a config."""
    raw = cfg.model_dump(mode="json")
    for name, value in params.items():
        section, _, field = name.rpartition(".")
        section = section or "train"
        if section not in SECTIONS:
            raise ConfigError(f"parameter {name!r}: expected a field of {', '.join(SECTIONS)} (e.g. train.lr)")
        if field not in type(getattr(cfg, section)).model_fields:
            known = ", ".join(sorted(type(getattr(cfg, section)).model_fields))
            raise ConfigError(f"parameter {name!r}: {section} has no field {field!r} (fields: {known})")
        raw[section][field] = value
    return validate_section(TrainingConfig, raw, "parameters")
