"""Deployment records, shared by both release backends: the A/B experiment's summary, the record
stored (with the experiment's report beside it), and the audit entries of a finished release."""

from __future__ import annotations

import datetime as dt
from typing import Any

from components.common import audit
from components.common.layout import deployment_record_key
from components.stages.release.analysis import CanaryState
from components.stages.release.artifacts import DeploymentRecord
from components.stages.release.config import RolloutConfig
from components.stages.release.experiment import report_markdown


def experiment_result(candidate: str, stable: str | None, state: CanaryState,
                      rollout: RolloutConfig) -> dict[str, Any]:
    """An A/B release's verdict as the record keeps it: the winner named by version, with the
    test's settings."""
    ab = rollout.ab
    result = dict(state.result or {})
    winner = result.get("winner")
    return {**result, "winner": {"candidate": candidate, "stable": stable}.get(winner),
            "candidate": candidate, "stable": stable, "metric": ab.metric, "split": ab.split,
            "key": ab.key, "mde": ab.mde, "alpha": ab.alpha, "power": ab.power, "experiment": state.experiment}


def store_record(store, fields: dict[str, Any], state: CanaryState | None = None, log=None) -> DeploymentRecord:
    """Check a finished release's record against its model, store it (an A/B's Markdown report
    beside it), and write its audit entries: one per kubectl verb a person used, then the release's."""
    record = DeploymentRecord.model_validate({**fields, "finished_at": fields.get("finished_at")
                                              or dt.datetime.now(dt.UTC).isoformat()})
    key = deployment_record_key(record.model, record.finished_at, record.candidate, record.env)
    if record.experiment:
        report_key = key.removesuffix(".json") + "-experiment.md"
        store.write_bytes(report_key, report_markdown(record.experiment).encode())
        record.experiment_report_uri = store.url(report_key)
    store.write_json(key, record.as_json())
    record.record_uri = store.url(key)
    _record_verbs(store, record, state)
    _record_release(store, record, key)
    if log is not None:
        log(f"{record.strategy} outcome: {record.outcome} (record {record.record_uri})")
    return record


def _record_release(store, record: DeploymentRecord, key: str) -> None:
    """The audit entry of a finished release (local and KServe backends alike)."""
    audit.append(store, "release_finished", {"model": record.model, "version": record.candidate,
                                             "env": record.env, "strategy": record.strategy},
                 {"outcome": record.outcome, "stable": record.stable, "record": key,
                  "started_at": record.started_at, "finished_at": record.finished_at})


def _record_verbs(store, record: DeploymentRecord, state: CanaryState | None) -> None:
    """One audit entry per kubectl verb a person used on the release, with who the API server said
    they were (kept on the InferenceService by `kubectl conveyor`; written here, where the store is)."""
    for verb in (state.verbs if state else []):
        audit.append(store, "rollout_verb", {"model": record.model, "version": record.candidate,
                                             "env": record.env},
                     {"outcome": verb["verb"], "at": verb["at"], "strategy": record.strategy},
                     actor={"kind": "user", "name": verb["by"], "authenticated_by": "SelfSubjectReview",
                            "via": f"kubectl conveyor {verb['verb']}"})
