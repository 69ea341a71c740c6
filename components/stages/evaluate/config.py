"""What the evaluate step computes beyond the held-out test score."""

from __future__ import annotations

from pydantic import Field, model_validator

from components.common.config import Section


class EvaluateConfig(Section):
    # k-fold cross-validation of the candidate's configuration over the train and validation
    # splits (0: off). Costs k trainings of (k-1)/k of the pool at the candidate's best epoch count.
    cv_folds: int = Field(0, ge=0, le=20)

    @model_validator(mode="after")
    def _folds(self) -> EvaluateConfig:
        if self.cv_folds == 1:
            raise ValueError("cv_folds: 0 (off) or at least 2")
        return self
