"""Monitoring and retraining-trigger settings (pure: part of the typed config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SIGNALS = ("input_drift", "prediction_drift", "accuracy_drop")


class TriggerPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_samples: int = Field(500, ge=1)          # fewer logged rows in the window: "insufficient data"
    consecutive_windows: int = Field(1, ge=1)    # debounce: drift must persist this many windows
    cooldown_hours: float = Field(24.0, ge=0)    # no retrain this soon after the last one
    max_retrains_per_day: int = Field(2, ge=1)
    signals: list[Literal["input_drift", "prediction_drift", "accuracy_drop"]] = Field(
        default_factory=lambda: list(SIGNALS))


class MonitorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(24.0, gt=0)           # logged predictions of the last N hours
    reference_rows: int = Field(20_000, ge=1000)      # sampled from the champion's training split
    drift_share: float = Field(0.5, gt=0, le=1)       # share of drifted input features = input drift
    numeric_threshold: float = Field(0.1, gt=0)       # normed Wasserstein (Evidently's default)
    categorical_threshold: float = Field(0.1, gt=0)   # Jensen-Shannon distance (Evidently's default)
    hash_bins: int = Field(32, ge=2)                  # token feature-hash histogram resolution
    max_accuracy_drop: float = Field(0.05, ge=0, le=1)  # live accuracy vs the champion's test accuracy
    min_labelled: int = Field(200, ge=1)              # delayed labels needed to judge live accuracy
    report_rows: int = Field(20_000, ge=100)          # rows per side in the Evidently HTML report
    pushgateway_url: str | None = None                # cluster: push the verdict as metrics for alerts
    trigger: TriggerPolicy = Field(default_factory=TriggerPolicy)
    # How the inference log keeps request text (production requests are personal data): redacted
    # (typed placeholders for emails, phones, IPs, cards, IBANs, URL users: components.common.redact),
    # hashed (sha256 only: no input drift), none (no text: no input drift), or raw.
    log_text: Literal["redacted", "hashed", "raw", "none"] = "redacted"
    # Logged rows (and delayed labels) older than this are deleted by the monitoring step; none: kept.
    retention_days: float | None = Field(30.0, gt=0)
    # What a triggered retrain does: rerun the search, or retrain the champion's configuration.
    retrain: Literal["search", "champion_params"] = "champion_params"
