"""The notify components' work: build the notification, post it, record an Event in a pod."""

from __future__ import annotations

import os
import sys
from typing import Any

from components.common.errors import InputError
from components.stages.notify.config import NotifyConfig
from components.stages.notify.core import (
    failure_notification,
    gate_notification,
    post,
    release_notification,
    staging_notification,
)

URL_ENV = "CONVEYOR_NOTIFY_URL"


def deliver(event: str, run_id: str, model: str, source: dict[str, Any], config: dict) -> dict[str, Any]:
    cfg = NotifyConfig.model_validate(config)
    if event == "not_blessed":
        payload = gate_notification(run_id, model, source)
    elif event == "rolled_back":
        payload = release_notification(run_id, model, source)
    elif event in ("staging_failed", "awaiting_approval"):
        payload = staging_notification(run_id, model, source)
        if payload["event"] != event:
            raise InputError(f"event {event!r}: the staging record says {payload['event']}")
    else:
        raise InputError(f"event must be not_blessed, staging_failed, awaiting_approval or rolled_back, got {event!r}")
    return {**payload, "delivery": _send(payload, cfg)}


def deliver_failure(run_id: str, model: str, state: str, error: str | None, config: dict) -> dict[str, Any] | None:
    """Exit handler: a notification only when the run failed (None otherwise)."""
    cfg = NotifyConfig.model_validate(config)
    if state.upper() in ("FAILED", "ERROR", "CANCELED", "CANCELLED") and "failed" in cfg.events:
        payload = failure_notification(run_id, model, state, error)
        result = {**payload, "delivery": _send(payload, cfg)}
        sys.stderr.write(f"notification {payload['event']}: {payload['summary']} ({result['delivery']})\n")
        return result
    return None


EVENT_REASONS = {"not_blessed": "CandidateNotBlessed", "staging_failed": "StagingFailed",
                 "awaiting_approval": "AwaitingApproval", "rolled_back": "ReleaseNotPromoted",
                 "failed": "PipelineRunFailed"}


def _send(payload: dict[str, Any], cfg: NotifyConfig) -> dict[str, Any]:
    if payload["event"] not in cfg.events:
        return {"delivered": False, "skipped": f"event {payload['event']} is not in notify.events"}
    url = os.environ.get(URL_ENV) or cfg.webhook_url
    delivery = post(url, payload, cfg.timeout_s) if url else {"delivered": False, "skipped": "no webhook configured"}
    return delivery
