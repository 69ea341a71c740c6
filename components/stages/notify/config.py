"""Where "Alert & Stop" notifications go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.common.config import Section

EVENTS = ("not_blessed", "staging_failed", "awaiting_approval", "rolled_back", "failed")
Event = Literal["not_blessed", "staging_failed", "awaiting_approval", "rolled_back", "failed"]


class NotifyConfig(Section):
    # Local runs: the receiver's URL (None: the notification is only written to the run summary).
    # On the cluster the URL comes from the Secret below (key `url`) as CONVEYOR_NOTIFY_URL, so it
    # never sits in the compiled pipeline.
    webhook_url: str | None = None
    secret: str = "conveyor-notify"
    events: list[Event] = Field(default_factory=lambda: list(EVENTS))
    timeout_s: float = Field(5.0, gt=0)
