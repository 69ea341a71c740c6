"""Environments and approvals: what a version must have passed before it may enter an environment,
and the records that say so. Every path to production (the pipeline's release step, `conveyor
approve`, the release Job `kubectl conveyor approve` starts) calls `require_entry` before any
traffic moves, so a version that never passed staging cannot reach production by any of them.

Per version and environment (components.common.layout):
    verification.json  the pre-production verdict (deploy + analysis on replayed labelled traffic)
    request.json       an approval request (approval: manual), with when it expires
    decision.json      granted | rejected | expired, written once (a conditional put): two people
                       deciding at once cannot both win, and a decision is never overwritten
Each is also an audit entry (staging_result, approval_requested, approval_granted, ...).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from components.common import audit
from components.common.errors import NotFoundError, ReleaseRefused
from components.common.layout import environment_record_key, model_card_key, release_prefix
from components.common.storage import Store
from components.stages.release.config import EnvironmentConfig

GRANTED, REJECTED, EXPIRED = "granted", "rejected", "expired"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(at: dt.datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _read(store: Store, model: str, version: str, env: str, record: str) -> dict[str, Any] | None:
    key = environment_record_key(model, version, env, record)
    return store.read_json(key) if store.exists(key) else None


def verification(store: Store, model: str, version: str, env: str) -> dict[str, Any] | None:
    return _read(store, model, version, env, "verification")


def request(store: Store, model: str, version: str, env: str) -> dict[str, Any] | None:
    return _read(store, model, version, env, "request")


def decision(store: Store, model: str, version: str, env: str) -> dict[str, Any] | None:
    return _read(store, model, version, env, "decision")


def record_verification(store: Store, model: str, version: str, env: str, result: dict[str, Any],
                        actor: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pre-production environment's verdict: {passed, blessing, checks, stable, ...}."""
    key = environment_record_key(model, version, env, "verification")
    record = {"model": model, "version": version, "env": env, "at": _stamp(_now()), **result}
    store.write_json(key, record)
    audit.append(store, "staging_result", {"model": model, "version": version, "env": env},
                 {"outcome": "passed" if result["passed"] else "failed", "reason": result.get("reason"),
                  "production": result.get("stable"), "record": key}, actor=actor)
    return record


def _write_decision(store: Store, model: str, version: str, env: str, record: dict[str, Any]) -> bool:
    key = environment_record_key(model, version, env, "decision")
    return store.create_bytes(key, json.dumps(record, indent=2, sort_keys=True).encode())


def request_approval(store: Store, model: str, version: str, env: EnvironmentConfig, checked: dict[str, Any],
                     actor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Manual approval: the version now awaits a person (an Alert & Stop notification says so)."""
    at = _now()
    record = {"model": model, "version": version, "env": env.name, "requested_at": _stamp(at),
              "expires_at": _stamp(at + dt.timedelta(hours=env.approval_ttl_hours)), "checked": checked}
    key = environment_record_key(model, version, env.name, "request")
    if store.create_bytes(key, json.dumps(record, indent=2, sort_keys=True).encode()):
        audit.append(store, "approval_requested", {"model": model, "version": version, "env": env.name},
                     {"outcome": "awaiting approval", "expires_at": record["expires_at"], "record": key},
                     actor=actor)
        return record
    return store.read_json(key)  # requested before (a re-run): the first request and its expiry stand


def grant_automatically(store: Store, model: str, version: str, env: EnvironmentConfig, checked: dict[str, Any],
                        actor: dict[str, Any] | None = None) -> dict[str, Any]:
    """approval: auto: the policy grants entry because the environment before passed."""
    record = {"model": model, "version": version, "env": env.name, "decision": GRANTED, "at": _stamp(_now()),
              "by": {"policy": "auto", **(actor or audit.default_actor())},
              "reason": "approval: auto; the environment before passed", "checked": checked}
    if not _write_decision(store, model, version, env.name, record):
        existing = decision(store, model, version, env.name) or {}
        if existing.get("decision") != GRANTED:
            raise ReleaseRefused(f"{model} {version}: entry to {env.name} was already {existing.get('decision')} "
                                 f"by {_who(existing)} ({existing.get('reason')})")
        return existing
    audit.append(store, "approval_granted", {"model": model, "version": version, "env": env.name},
                 {"outcome": GRANTED, "policy": "auto", "reason": record["reason"]}, actor=actor)
    return record


def _who(record: dict[str, Any]) -> str:
    by = record.get("by") or {}
    return by.get("name") or by.get("policy") or "unknown"


def expire_overdue(store: Store, model: str, version: str, env: str, at: dt.datetime | None = None) -> bool:
    """Writes the `expired` decision of a request past its expiry (once); True when it is expired."""
    req = request(store, model, version, env)
    if req is None or decision(store, model, version, env) is not None:
        return False
    at = at or _now()
    if at < _parse(req["expires_at"]):
        return False
    record = {"model": model, "version": version, "env": env, "decision": EXPIRED, "at": _stamp(at),
              "by": {"policy": "expiry"}, "reason": f"not decided by {req['expires_at']}"}
    if _write_decision(store, model, version, env, record):
        audit.append(store, "approval_expired", {"model": model, "version": version, "env": env},
                     {"outcome": EXPIRED, "requested_at": req["requested_at"], "expires_at": req["expires_at"]})
    return True


def _previous(envs: list[EnvironmentConfig], env: str) -> EnvironmentConfig | None:
    names = [e.name for e in envs]
    if env not in names:
        raise ReleaseRefused(f"no environment {env!r} in the config (environments: {', '.join(names)})")
    index = names.index(env)
    return envs[index - 1] if index else None


def _require_known(store: Store, model: str, version: str) -> None:
    if not store.exists(model_card_key(model, version)):
        raise NotFoundError(f"model {model!r} has no version {version!r} in {store.uri}")


def _blessing_refusal(store: Store, model: str, version: str) -> str:
    """Why a version that has no passed verification may not go on: its gate, or no staging."""
    gates = [e for e in audit.read_entries(store) if e["event"] == "gate_decision"
             and e["subject"].get("model") == model and e["subject"].get("version") == version]
    if not gates:
        return "it was never gated"
    last = gates[-1]["details"]
    if last.get("decision") != "BLESSED":
        return f"it was not blessed (gate {last.get('decision')}: {'; '.join(last.get('reasons') or []) or '-'})"
    return ""


def check_decidable(store: Store, model: str, version: str, env: str, envs: list[EnvironmentConfig],
                    verb: str) -> dict[str, Any]:
    """Refusals shared by approve and reject: unknown, unblessed, not staged, already decided,
    expired. Returns the verification of the environment before (what was checked)."""
    _require_known(store, model, version)
    before = _previous(envs, env)
    if before is None:
        raise ReleaseRefused(f"{model} {version}: {env} is the first environment; there is nothing to {verb}")
    done = decision(store, model, version, env)
    if done is None and expire_overdue(store, model, version, env):
        done = decision(store, model, version, env)
    if done is not None:
        raise ReleaseRefused(f"cannot {verb} {model} {version} for {env}: it was already {done['decision']} "
                             f"at {done['at']} by {_who(done)} ({done.get('reason')})")
    passed = verification(store, model, version, before.name)
    if passed is None or not passed.get("passed"):
        why = _not_passed(store, model, version, before, passed)
        raise ReleaseRefused(f"cannot {verb} {model} {version} for {env}: {why}")
    return passed


def _not_passed(store: Store, model: str, version: str, before: EnvironmentConfig, passed: dict | None) -> str:
    if passed is not None:
        return f"it failed {before.name} ({passed.get('reason')})"
    return _blessing_refusal(store, model, version) or f"it never passed {before.name}"


def decide(store: Store, model: str, version: str, env: str, envs: list[EnvironmentConfig], verb: str,
           reason: str, actor: dict[str, Any] | None = None) -> dict[str, Any]:
    """A person's approval or rejection: who, when, why and what was checked before. Written once."""
    if verb not in ("approve", "reject"):
        raise ValueError(verb)
    if not reason.strip():
        raise ReleaseRefused(f"{verb} {model} {version}: --reason is required (it goes in the audit log)")
    checked = check_decidable(store, model, version, env, envs, verb)
    actor = actor or audit.default_actor()
    outcome = GRANTED if verb == "approve" else REJECTED
    summary = {"env": checked["env"], "outcome": "passed", "at": checked["at"], "stable": checked.get("stable"),
               "checks": checked.get("checks"), "record": environment_record_key(model, version, checked["env"],
                                                                                 "verification")}
    record = {"model": model, "version": version, "env": env, "decision": outcome, "at": _stamp(_now()),
              "by": actor, "reason": reason, "checked": summary}
    if not _write_decision(store, model, version, env, record):
        done = decision(store, model, version, env) or {}
        raise ReleaseRefused(f"cannot {verb} {model} {version} for {env}: {_who(done)} "
                             f"{done.get('decision')} it first, at {done.get('at')}")
    audit.append(store, f"approval_{outcome}", {"model": model, "version": version, "env": env},
                 {"outcome": outcome, "reason": reason, "checked": summary["record"]}, actor=actor)
    return record


def require_entry(store: Store, model: str, version: str, env: str, envs: list[EnvironmentConfig]) -> dict | None:
    """Refuse (ReleaseRefused) unless `version` may enter `env`: the environment before passed and
    entry was granted (by policy or a person). Returns the grant (None for the first environment)."""
    _require_known(store, model, version)
    before = _previous(envs, env)
    if before is None:
        return None
    passed = verification(store, model, version, before.name)
    if passed is None or not passed.get("passed"):
        why = _not_passed(store, model, version, before, passed)
        raise ReleaseRefused(f"{model} {version} may not enter {env}: {why}")
    granted = decision(store, model, version, env)
    if granted is None or granted.get("decision") != GRANTED:
        state = "awaiting approval" if granted is None else f"{granted['decision']} ({granted.get('reason')})"
        raise ReleaseRefused(f"{model} {version} may not enter {env}: entry is not granted ({state})")
    return granted


def pending(store: Store, model: str | None = None) -> list[dict[str, Any]]:
    """Approval requests not decided yet (overdue ones are expired on the way, in the audit log)."""
    out = []
    for key in store.list(release_prefix(model) if model else "releases/"):
        if not key.endswith("/request.json"):
            continue
        req = store.read_json(key)
        if decision(store, req["model"], req["version"], req["env"]) is not None:
            continue
        if expire_overdue(store, req["model"], req["version"], req["env"]):
            continue
        out.append(req)
    return sorted(out, key=lambda r: r["requested_at"])
