"""What the ingest step gives, typed: the outcome of one ingest, which the CLI prints, the KFP step
writes as its `result` artifact, and a SparkApplication's driver writes to the store for its
launcher (which validates it on reading).

File layout: one JSON object (indent 2) with these fields, in this order. The step's KFP outputs
repeat `version`, `manifest_uri` and `quarantine_uri`; its `counts` metrics repeat the four row
counts; the artifact's metadata holds `version` and `new`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class IngestOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str
    version: str
    parent: str | None  # the version this one extends (its parts are shared by reference)
    new: bool  # False: the same content was already stored as `version`, nothing was written
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    quarantine_uri: str | None
    manifest_uri: str
    rows_total: int = 0  # accepted rows of the version, the parent's included
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    workers: int = 1  # processes that cleaned (data.workers; 1 for a small input)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
