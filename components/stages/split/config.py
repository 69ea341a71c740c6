"""How rows are assigned to train/validation/test."""

from __future__ import annotations

from pydantic import Field, model_validator

from components.common.config import Section


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
