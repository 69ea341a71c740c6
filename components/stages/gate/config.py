"""The quality gate's thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.common.config import Section


class GateConfig(Section):
    # Absolute floors / ceilings on the candidate (overall).
    min_accuracy: float = Field(0.9, ge=0, le=1)
    min_macro_f1: float = Field(0.85, ge=0, le=1)
    max_ece: float = Field(0.1, ge=0, le=1)
    max_batch64_latency_ms: float = Field(200.0, gt=0)
    # Largest allowed drop vs the champion, overall and in every slice both have.
    max_accuracy_regression: float = Field(0.01, ge=0, le=1)
    max_macro_f1_regression: float = Field(0.02, ge=0, le=1)
    max_slice_accuracy_regression: float = Field(0.05, ge=0, le=1)
    # Floor on the lower confidence bound of the candidate's k-fold accuracy (evaluate.cv_folds must
    # be on; None: not checked). Steadier than one test split when the data is small.
    min_cv_accuracy_lower: float | None = Field(None, ge=0, le=1)
    # Infra validation: the model served by a real KServe server must answer like offline.
    require_infra_validation: bool = True
    # A champion this code cannot load (an older model format, a tampered file): "fail" refuses
    # the candidate until someone decides; "absolute_only" judges it on the absolute checks alone.
    on_unusable_champion: Literal["fail", "absolute_only"] = "fail"
