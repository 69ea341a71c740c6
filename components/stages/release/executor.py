"""The release steps' work, shared by their KFP components, `conveyor approve` and the release Job:

  stage    a blessed candidate through every pre-production environment (deploy, verify on
           replayed labelled traffic, record), then grant entry to production (approval: auto)
           or request a person's approval (manual);
  release  into one environment (production) by `rollout.strategy`, only after `require_entry`:
           the environment before passed and entry was granted.

The labelled rows every release replays are the split step's test split, kept in the store by
`stage` (releases/<model>/<version>/replay.parquet), so a release started later (after an
approval, by another process or pod) replays exactly the rows staging did.
"""

from __future__ import annotations

import io
from typing import Any

from components.common import audit
from components.common.errors import InputError
from components.common.layout import replay_rows_key
from components.common.storage import Store
from components.stages.registry.store import PRODUCTION_ALIAS, set_alias
from components.stages.release import environments as envs_
from components.stages.release.analysis import CanaryState
from components.stages.release.artifacts import DeploymentRecord, ReplayRows
from components.stages.release.config import EnvironmentConfig, check_environments
from components.stages.release.staging import production_version

RELEASE, AWAITING_APPROVAL, FAILED = "release", "awaiting_approval", "failed"


def keep_replay_rows(store: Store, model: str, version: str, test_split: bytes) -> str:
    key = replay_rows_key(model, version)
    if not store.exists(key):
        store.write_bytes(key, test_split)
    return key


def replay_rows(store: Store, model: str, version: str) -> ReplayRows:
    # lazy: pyarrow loads in ~0.3 s; only the release needs the rows
    import pyarrow.parquet as pq

    key = replay_rows_key(model, version)
    if not store.exists(key):
        raise InputError(f"{model} {version}: no labelled replay rows at {store.url(key)} (staging keeps them; "
                         "was this version staged?)")
    table = pq.read_table(io.BytesIO(store.read_bytes(key)), columns=["text", "label"])
    return ReplayRows(table.column("text").to_pylist(), table.column("label").to_pylist())


def _check_environments(environments: list[EnvironmentConfig]) -> None:
    if not environments or environments[-1].name != PRODUCTION_ALIAS:
        raise InputError(f"environments must end with {PRODUCTION_ALIAS!r}")


def stage(store: Store, model: str, candidate: str, environments: list[EnvironmentConfig], verify,
          log=print) -> dict[str, Any]:
    """Every pre-production environment in order; `verify(env) -> {passed, reason, ...}` deploys
    and judges there (local model servers or KServe). Returns {next, environment, stages}."""
    _check_environments(environments)
    stages: list[dict[str, Any]] = []
    for env in environments[:-1]:
        result = verify(env)
        record = envs_.record_verification(store, model, candidate, env.name, result)
        stages.append({k: record.get(k) for k in ("env", "passed", "reason", "stable", "inference_service")})
        log(f"{env.name}: {candidate} {'PASSED' if result['passed'] else 'FAILED'} ({result['reason']})")
        if not result["passed"]:
            return {"next": FAILED, "environment": env.name, "stages": stages}
        set_alias(store, model, env.alias, candidate, reason=f"{env.name} verification passed")
    production = environments[-1]
    if len(environments) == 1:  # no pre-production environment: production's release is the only check
        envs_.grant_automatically(store, model, candidate, production, {"env": None})
        return {"next": RELEASE, "environment": production.name, "stages": stages}
    checked = {"env": environments[-2].name, "outcome": "passed", "reason": stages[-1]["reason"]}
    if production.approval == "auto":
        envs_.grant_automatically(store, model, candidate, production, checked)
        log(f"{production.name}: entry granted (approval: auto)")
        return {"next": RELEASE, "environment": production.name, "stages": stages}
    req = envs_.request_approval(store, model, candidate, production, checked)
    log(f"{production.name}: {candidate} awaits approval until {req['expires_at']}: conveyor approve {model} "
        f"{candidate} --env {production.name} --reason TEXT (or reject)")
    return {"next": AWAITING_APPROVAL, "environment": production.name, "stages": stages,
            "expires_at": req["expires_at"]}


def step_recorder(store: Store, model: str, candidate: str, env: str, strategy: str):
    """`on_step` for a rollout: one audit entry per action that moves traffic or ends it (holds
    are in the deployment record, interval by interval)."""

    def on_step(state: CanaryState) -> None:
        last = state.history[-1] if state.history else {}
        if last.get("action") in (None, "hold", "none"):
            return
        audit.append(store, "release_step", {"model": model, "version": candidate, "env": env,
                                             "strategy": strategy},
                     {"outcome": last["action"], "weight": last.get("weight"), "phase": str(state.phase),
                      "stage": last.get("stage"), "failed_checks": [c["name"] for c in last.get("checks", [])
                                                                    if c.get("passed") is not True]})

    return on_step


def release(store: Store, model: str, candidate: str, env: str, environments: list[EnvironmentConfig],
            strategy: str, deliver, target: str = "local") -> DeploymentRecord:
    """Release into `env` (production) after `require_entry`. `deliver(texts, labels, on_step)`
    runs the strategy on a backend (local model servers or KServe) and returns its record."""
    _check_environments(environments)
    if env != environments[-1].name:
        raise InputError(f"release --env {env}: releases by strategy go to {environments[-1].name}; "
                         f"{', '.join(e.name for e in environments[:-1])} are entered by staging")
    grant = envs_.require_entry(store, model, candidate, env, environments) or {}
    texts, labels = replay_rows(store, model, candidate)
    by = grant.get("by") or {}
    audit.append(store, "release_started", {"model": model, "version": candidate, "env": env, "strategy": strategy},
                 {"outcome": "started", "stable": production_version(store, model), "target": target,
                  "granted_by": by.get("name") or by.get("policy")})
    return deliver(texts, labels, step_recorder(store, model, candidate, env, strategy))


def environments_from(raw: list) -> list[EnvironmentConfig]:
    return check_environments([EnvironmentConfig.model_validate(e) for e in raw])
