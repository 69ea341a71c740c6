"""What the gate step writes, typed: the blessing (TFX's ModelBlessing), which the stage and
release steps verify before they move any traffic.

File layout: the gate step's `blessing` output is one JSON object (indent 2) with these fields, in
this order; its KFP metadata repeats `decision`, `blessed`, `model` and `candidate` for the
dashboard. `checks` holds every check with its value, threshold and result; the regression checks
add `champion` and `drop`, a slice check its `rows`, the cross-validation check its `folds`, and a
check that could not be measured a `detail`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from components.common.config import read_json_model
from components.common.errors import GateFailed


class Check(BaseModel):
    model_config = ConfigDict(extra="allow")

    check: str
    kind: Literal["absolute", "regression", "infra"]
    value: float
    threshold: float
    passed: bool


class Blessing(BaseModel):
    """BLESSED only when every check passed; the verdict, the flag, the checks and the reasons
    must agree, so a hand-edited file that flips one of them is refused as a whole."""

    model_config = ConfigDict(extra="forbid")

    blessed: bool
    decision: Literal["BLESSED", "NOT_BLESSED"]
    champion_present: bool
    checks: list[Check]
    reasons: list[str]
    model: str
    candidate: str
    champion: str | None
    dataset: dict[str, Any]
    infra_validation: dict[str, Any] | None
    explanations: dict[str, Any] | None
    cross_validation: dict[str, Any] | None

    @model_validator(mode="after")
    def _agrees(self) -> Blessing:
        failed = [c.check for c in self.checks if not c.passed]
        if self.decision != ("BLESSED" if self.blessed else "NOT_BLESSED"):
            raise ValueError(f"decision {self.decision!r} disagrees with blessed {self.blessed!r}")
        if self.blessed == bool(failed) or len(self.reasons) != len(failed):
            raise ValueError(f"blessed {self.blessed!r} disagrees with its checks (failed: {failed or 'none'}) "
                             f"or its {len(self.reasons)} reasons")
        return self

    @classmethod
    def read(cls, path: str) -> Blessing:
        """The blessing in the file at `path`, or GateFailed saying what is wrong with it."""
        return read_json_model(cls, path, GateFailed, "the blessing", "a blessing the gate wrote",
                               "; refusing to roll out on it")

    def write(self, path: str) -> None:
        with open(path, "w") as handle:
            json.dump(self.model_dump(mode="json"), handle, indent=2)
