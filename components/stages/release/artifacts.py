"""What a release gives, typed: the deployment record of one rollout into one environment, from
either backend (two local model servers, or a KServe InferenceService).

File layout: the record is one JSON object (indent 2), stored at
`deployments/<model>/<env>/<finished_at>-<candidate>.json` and written again, with `record_uri`
added, as the release step's `deployment` output (its KFP metadata repeats `outcome`, `candidate`,
`env` and `strategy`). `state` is the rollout's state machine at the end (`CanaryState.to_json`:
phase, weight, the checks of every interval, the people's verbs), null when nothing was analysed
(a first deployment, or a rollout the cluster never started). `config` and `rollout` are the
canary and rollout settings it ran under. An A/B release adds `experiment` (the test's verdict,
effect and interval) and the Markdown report's `experiment_report_uri` beside the record.
Only the keys a backend sets are written: a local record has no `inference_service`, a KServe
record no `stable_failed_requests`.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from components.common.config import read_json_model
from components.common.errors import IntegrityError
from components.stages.release.analysis import Phase


class ReplayRows(NamedTuple):
    """The labelled rows every stage and release of a version replays: the split step's test split,
    kept by staging at releases/<model>/<version>/replay.parquet (`text` and `label` columns)."""

    texts: list[str]
    labels: list[str]


class DeploymentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    candidate: str
    env: str = "production"
    backend: Literal["local", "kserve"] = "local"
    strategy: str = "canary"
    started_at: str
    finished_at: str | None = None  # set when the record is stored
    stable: str | None = None  # the version serving before (null on a first deployment)
    outcome: str  # Promoted | RolledBack | Paused | Failed, or None when the cluster never started one
    reason: str | None = None  # set when no analysis ran (a first deployment)
    state: dict[str, Any] | None = None
    config: dict[str, Any]
    rollout: dict[str, Any] | None = None
    inference_service: str | None = None  # <namespace>/<name> on KServe
    stable_failed_requests: int | None = None  # local: the stable's replayed requests that failed
    replay_failed_requests: int | None = None  # KServe: labelled rows whose request failed
    previous_scaled_down_after_s: float | None = None  # blue-green: how long the previous stayed up
    experiment: dict[str, Any] | None = None
    experiment_report_uri: str | None = None
    record_uri: str | None = None  # where it was stored (not in the stored copy itself)

    @property
    def promoted(self) -> bool:
        return self.outcome == Phase.PROMOTED

    def as_json(self) -> dict[str, Any]:
        """The keys the backend set, as stored."""
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, path: str) -> None:
        with open(path, "w") as handle:
            json.dump(self.as_json(), handle, indent=2)

    @classmethod
    def read(cls, path: str) -> DeploymentRecord:
        """The record in the file at `path`, or IntegrityError saying what is wrong with it."""
        return read_json_model(cls, path, IntegrityError, "the deployment record", "a deployment record")
