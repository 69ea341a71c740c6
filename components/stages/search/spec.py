"""One search spec for both backends (Katib on the cluster, Optuna locally), validated up front.

The Katib SDK validates nothing (an objective type 'maximise' is accepted), so every field is
checked here and a bad spec is refused with a message naming the field.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.common.errors import SpecError
from components.common.grid import double_grid
from components.stages.train.config import TrainingConfig, apply_params

ALGORITHMS = ("random", "tpe", "multivariate-tpe", "cmaes", "grid")
# Random trials before TPE models the results. Katib's Optuna service (which serves multivariate-tpe)
# takes it as the `n_startup_trials` setting; left out, Optuna's default of 10 would make a search as
# short as the bundled 8 trials all random on the cluster while the local backend ran TPE after 4.
TPE_STARTUP_TRIALS = 4
# What the training entrypoint reports each epoch (validation split), in Katib's metric lines.
METRICS = ("accuracy", "loss", "macro_f1", "train_loss")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Parameter(_Strict):
    name: str  # a config field: `lr` / `train.lr`, `features.num_buckets`, ...
    type: Literal["double", "int", "categorical", "discrete"]
    min: float | None = None
    max: float | None = None
    step: float | None = None
    values: list[Any] | None = None  # categorical / discrete
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        if self.type in ("double", "int"):
            if self.min is None or self.max is None:
                raise ValueError(f"{self.name}: a {self.type} parameter needs min and max")
            if self.min > self.max:
                raise ValueError(f"{self.name}: min {self.min} > max {self.max}")
            if self.log and self.min <= 0:
                raise ValueError(f"{self.name}: a log-scale range needs min > 0, got {self.min}")
            if self.type == "int" and (self.min != int(self.min) or self.max != int(self.max)):
                raise ValueError(f"{self.name}: an int parameter needs whole-number bounds")
            if self.values is not None:
                raise ValueError(f"{self.name}: give min/max or values, not both")
        else:
            if not self.values:
                raise ValueError(f"{self.name}: a {self.type} parameter needs a non-empty values list")
            if len({repr(v) for v in self.values}) != len(self.values):
                raise ValueError(f"{self.name}: values contain duplicates")
            if self.type == "discrete" and not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                   for v in self.values):
                raise ValueError(f"{self.name}: discrete values must be numbers (use categorical otherwise)")
        return self


class Objective(_Strict):
    metric: str = "accuracy"
    goal: Literal["maximize", "minimize"] = "maximize"
    target: float | None = None  # stop the search once reached (Katib goal)
    # k >= 2: the objective is the metric's k-fold cross-validated mean (`cv_<metric>`), which each
    # trial reports once, after training (components.stages.train.cv); 0: the validation metric per epoch.
    cv_folds: int = Field(0, ge=0, le=20)

    @model_validator(mode="after")
    def _known(self) -> Objective:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not reported by training; expected one of {list(METRICS)}")
        if self.cv_folds == 1:
            raise ValueError("cv_folds: 0 (the validation metric) or at least 2")
        if self.cv_folds and self.metric not in ("accuracy", "macro_f1"):
            raise ValueError(f"metric {self.metric!r}: a cross-validated objective is accuracy or macro_f1")
        return self

    @property
    def name(self) -> str:
        """The metric name trials report for this objective (what Katib and Optuna read)."""
        return f"cv_{self.metric}" if self.cv_folds else self.metric


class EarlyStopping(_Strict):
    algorithm: Literal["medianstop", "none"] = "medianstop"
    min_trials_required: int = Field(3, ge=1)
    start_step: int = Field(2, ge=1)


class SearchSpec(_Strict):
    parameters: list[Parameter]
    objective: Objective = Field(default_factory=Objective)
    algorithm: str = "tpe"
    max_trials: int = Field(8, ge=1)
    parallel_trials: int = Field(2, ge=1)
    max_failed_trials: int = Field(3, ge=0)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    seed: int = 7
    # After the search, trials other than the best keep their records and metrics, not their weights.
    keep_trial_weights: bool = False
    # Wall-clock budget for the whole search: no trial starts after it, running trials are stopped
    # (locally: terminated; on Katib: the experiment is deleted) and the best finished trial wins.
    timeout_s: int = Field(3600, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SearchSpec:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r} is unknown; expected one of {list(ALGORITHMS)}")
        if not self.parameters:
            raise ValueError("parameters: give at least one parameter to search")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"parameters: duplicate names {sorted({n for n in names if names.count(n) > 1})}")
        if self.parallel_trials > self.max_trials:
            raise ValueError(f"parallel_trials ({self.parallel_trials}) > max_trials ({self.max_trials})")
        if self.algorithm == "grid" and any(p.type == "double" and p.step is None for p in self.parameters):
            raise ValueError("grid search needs a step for every double parameter (or categorical/discrete values)")
        if self.algorithm == "cmaes" and any(p.type == "categorical" for p in self.parameters):
            raise ValueError("cmaes searches numeric spaces only; make categorical parameters discrete or use tpe")
        if self.algorithm == "cmaes" and sum(p.type in ("double", "int") for p in self.parameters) < 2:
            # Katib's goptuna service refuses it (and Optuna's CMA-ES falls back to random sampling)
            raise ValueError("cmaes needs two or more double/int parameters; with fewer, use tpe")
        if self.objective.cv_folds and self.early_stopping.algorithm != "none":
            raise ValueError("early_stopping: a cross-validated objective (objective.cv_folds) arrives once, after "
                             "training, so there are no per-epoch values to stop a trial on; set early_stopping: "
                             "{algorithm: none}")
        return self

    def startup_trials(self) -> int:
        """TPE's random start-up trials, the same on both backends."""
        return min(TPE_STARTUP_TRIALS, self.max_trials)

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every parameter, for grid search."""

        out: dict[str, list[Any]] = {}
        for p in self.parameters:
            if p.values is not None:
                out[p.name] = list(p.values)
            elif p.type == "int":
                step = int(p.step or 1)
                out[p.name] = list(range(int(p.min), int(p.max) + 1, step))
            else:
                out[p.name] = double_grid(p.min, p.max, p.step)
        return out

    def grid_size(self) -> int:
        return int(np.prod([len(values) for values in self.grid().values()]))


def parse_spec(raw: dict[str, Any], origin: str = "search") -> SearchSpec:
    """Validate a spec from config; errors name the field (`search.parameters.1: lr: min 1 > max 0.1`)."""
    # Also check each parameter addresses a real config field, before anything launches.
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise SpecError(f"{origin}{'.' + where if where else ''}: {message}") from exc

    sample = {}
    for p in spec.parameters:
        sample[p.name] = p.values[0] if p.values else (int(p.min) if p.type == "int" else p.min)
    try:
        apply_params(TrainingConfig(), sample)
        for p in spec.parameters:
            if p.values:
                p.values = [_as_field_type(p.name, v) for v in p.values]
    except Exception as exc:
        raise SpecError(f"{origin}.parameters: {getattr(exc, 'message', exc)}") from exc
    return spec


def _as_field_type(name: str, value: Any) -> Any:
    """`value` as the config field `name` holds it. A KFP dict parameter is a protobuf Struct whose
    numbers are all doubles, so `embed_dim: [32, 64, 128]` arrives as 32.0, ...; the trial, the
    leaderboard and the run record must see the int the training config declares (whole numbers
    of a field whose type has ints and no floats: `int`, `tuple[int, int] | None`)."""
    section, _, field = name.rpartition(".")
    info = type(getattr(TrainingConfig(), section or "train")).model_fields.get(field)
    if info is None:
        return value
    kinds = _scalar_types(info.annotation)
    if int not in kinds or float in kinds:
        return value
    return _whole_to_int(value)


def _scalar_types(annotation: Any) -> set[Any]:
    args = get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_scalar_types(a) for a in args if a is not Ellipsis))


def _whole_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [_whole_to_int(v) for v in value]
    return value
