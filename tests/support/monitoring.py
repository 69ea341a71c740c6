"""A fixed clock and the smallest monitor verdicts, for the trigger and submission tests."""

from __future__ import annotations

import datetime as dt

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def verdict(drifted: bool | None) -> dict:
    """A window's verdict: judged, with input drift or not; or (None) too few rows to judge."""
    if drifted is None:
        return {"status": "insufficient_data", "reason": "12 rows", "signals": {}}
    return {"status": "judged", "signals": {"input_drift": drifted, "prediction_drift": False, "accuracy_drop": None}}
