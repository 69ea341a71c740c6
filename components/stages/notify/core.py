"""Alert & Stop: one structured notification per event that stops a release (a NOT_BLESSED gate,
a rolled-back or stopped release, a failed run), posted as JSON to a webhook. Pure apart from the
one HTTP POST; delivery problems are returned, never raised, so a broken receiver cannot turn a
clean stop into a failed run."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

SCHEMA = "conveyor.dev/notification/v1"
SEVERITY = {"not_blessed": "warning", "staging_failed": "warning", "awaiting_approval": "info",
            "rolled_back": "warning", "failed": "critical"}


def gate_notification(run_id: str, model: str, blessing: dict[str, Any]) -> dict[str, Any]:
    reasons = blessing.get("reasons") or []
    return _notification("not_blessed", run_id, model, blessing.get("candidate"),
                         f"candidate {blessing.get('candidate')} of {model} NOT_BLESSED: "
                         + ("; ".join(reasons) or "no reason recorded"),
                         {"decision": blessing.get("decision"), "reasons": reasons,
                          "champion": blessing.get("champion")})


def release_notification(run_id: str, model: str, deployment: dict[str, Any]) -> dict[str, Any]:
    state = deployment.get("state") or {}
    last = (state.get("history") or [{}])[-1]
    failing = [c["name"] for c in last.get("checks", []) if c.get("passed") is not True]
    experiment = deployment.get("experiment") or {}
    why = experiment.get("reason") or (f"failed checks: {', '.join(failing)}" if failing else "stopped")
    return _notification("rolled_back", run_id, model, deployment.get("candidate"),
                         f"{deployment.get('strategy', 'canary')} release of {model} {deployment.get('candidate')} "
                         f"{deployment.get('outcome')}: {why}; {deployment.get('stable')} stays",
                         {"outcome": deployment.get("outcome"), "strategy": deployment.get("strategy", "canary"),
                          "stable": deployment.get("stable"), "failing_checks": failing,
                          "experiment": {k: experiment.get(k) for k in ("verdict", "winner", "p_value")}
                          if experiment else None, "record": deployment.get("record_uri")})


def staging_notification(run_id: str, model: str, verification: dict[str, Any]) -> dict[str, Any]:
    """After staging: the candidate failed there (staging_failed), or waits for a person (awaiting_approval)."""
    candidate = verification.get("candidate")
    stages = verification.get("stages") or []
    last = stages[-1] if stages else {}
    if verification.get("next") == "awaiting_approval":
        env = verification.get("environment", "production")
        return _notification("awaiting_approval", run_id, model, candidate,
                             f"{model} {candidate} passed {last.get('env', 'staging')} and awaits approval for {env} "
                             f"until {verification.get('expires_at')}: conveyor approve {model} {candidate} "
                             f"--env {env} --reason TEXT (or reject)",
                             {"environment": env, "expires_at": verification.get("expires_at"), "stages": stages})
    return _notification("staging_failed", run_id, model, candidate,
                         f"{model} {candidate} failed {last.get('env', 'staging')}: {last.get('reason')}; production "
                         "is unchanged", {"stages": stages})


def failure_notification(run_id: str, model: str, state: str, error: str | None) -> dict[str, Any]:
    return _notification("failed", run_id, model, None, f"pipeline run {run_id} {state}: {error or 'no message'}",
                         {"state": state, "error": error})


def _notification(event: str, run_id: str, model: str, candidate: str | None, summary: str,
                  detail: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "event": event, "severity": SEVERITY[event], "run_id": run_id, "model": model,
            "candidate": candidate, "summary": summary, "detail": detail,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def post(url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST the notification; returns {delivered, status | error} for the record."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return {"delivered": False, "error": "the receiver URL must be http:// or https://"}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "conveyor-notify"})
    try:
        # http(s) checked above (bandit B310)
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # nosec B310
            return {"delivered": 200 <= resp.status < 300, "status": resp.status}
    except urllib.error.HTTPError as exc:
        return {"delivered": False, "status": exc.code, "error": f"receiver answered {exc.code} {exc.reason}"}
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"delivered": False, "error": f"receiver {receiver_host(url)} unreachable: {reason}"}


def receiver_host(url: str) -> str:
    """Where a webhook goes, without what makes it a secret (Slack's and Teams' URLs carry their
    token in the path, others in the query or the user part): scheme, host and port only."""
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.hostname or '?'}" + (f":{parsed.port}" if parsed.port else "")
