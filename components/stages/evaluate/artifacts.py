"""What the evaluate step gives, typed: the candidate and the current champion scored on the same
test rows, which the gate step reads.

File layout: the step's `evaluation` output is one JSON object (indent 2): `dataset` {name,
version} and `split` (the split settings) the rows came from, `rows`, `candidate` and `champion`
(null when there is none, or when the champion is the candidate) as `Scores`, and
`champion_unusable` {version, reason} only when the champion could not be loaded by this code.
`Scores` holds evaluate.core.evaluate's metrics (accuracy, macro F1, ECE, the latency of a batch
of 64, per-class figures, the confusion matrix in `labels` order, per-slice accuracy) and, for the
candidate, its `explanations` and its k-fold estimate `cv` when evaluate.cv_folds asked for one.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from components.common.config import read_json_model
from components.common.errors import InputError


class Scores(BaseModel):
    model_config = ConfigDict(extra="allow")  # evaluate.core.evaluate's further figures, as it gives them

    version: str
    accuracy: float
    macro_f1: float
    ece: float
    batch64_latency_ms: float
    rows: int
    labels: list[str]
    confusion_matrix: list[list[int]]
    slices: dict[str, dict[str, Any]]
    explanations: dict[str, Any] | None = None
    cv: dict[str, Any] | None = None


class Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: dict[str, str]
    rows: int
    split: dict[str, Any]
    candidate: Scores
    champion: Scores | None
    champion_unusable: dict[str, str] | None = None

    @classmethod
    def read(cls, path: str) -> Evaluation:
        return read_json_model(cls, path, InputError, "the evaluation", "an evaluation the evaluate step wrote")

    def write(self, path: str) -> None:
        with open(path, "w") as handle:
            json.dump(self.model_dump(mode="json", exclude_unset=True), handle, indent=2)
