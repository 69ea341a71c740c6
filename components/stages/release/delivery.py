"""Delivery figures (the DORA four) from the audit log alone: no other record is read, so the
figures are as trustworthy as the hash chain `conveyor audit verify` checks.

  deployment frequency   production promotions per day in the window
  lead time for changes  data version committed -> a model trained on it promoted to production
                         (median and p90 over the promotions in the window)
  change failure rate    production releases that failed (rolled back by the analysis) or were
                         followed within `failure_window` by production moving back to the version
                         they replaced, / production releases
  time to restore        from a failure (a failed release's start, or a drift/accuracy decision
                         that fired) to production healthy again (the failed release's rollback
                         finished; for an alert, the next production promotion): median

Pure: entries (dicts as `audit.read_entries` gives them) in, figures out.
"""

from __future__ import annotations

import datetime as dt
import math
from statistics import median
from typing import Any

PRODUCTION = "production"


def _at(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (the value below which q of them lie; an observed value, no interpolation)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def parse_window(text: str) -> dt.timedelta:
    """`30d`, `12h`, `90m` or a number of days."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    text = text.strip()
    try:
        if text[-1:] in units:
            value = float(text[:-1])
            delta = dt.timedelta(**{units[text[-1]]: value})
        else:
            delta = dt.timedelta(days=float(text))
    except ValueError as exc:
        raise ValueError(f"window {text!r}: expected a duration like 30d, 12h or 90m") from exc
    if delta <= dt.timedelta(0):
        raise ValueError(f"window {text!r}: must be positive")
    return delta


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 4)


def _failed_releases(releases: list[dict[str, Any]], moves: list[dict[str, Any]],
                     failure_window: dt.timedelta) -> tuple[list[dict[str, Any]], list[float]]:
    """The production releases that failed (rolled back by the analysis, or promoted and then moved
    back to the version they replaced within `failure_window`), and the hours each took to restore."""
    failures, restore_hours = [], []
    for r in releases:
        outcome = r["details"].get("outcome")
        if outcome == "RolledBack":
            failures.append({"version": r["subject"]["version"], "how": "rolled back by the analysis",
                             "at": r["time"]})
            began = r["details"].get("started_at")
            if began:
                restored = _at(r) - dt.datetime.fromisoformat(began.replace("Z", "+00:00"))
                restore_hours.append(_hours(restored))
        elif outcome == "Promoted":
            replaced = r["details"].get("stable")
            back = next((m for m in moves if m["seq"] > r["seq"] and _at(m) - _at(r) <= failure_window
                         and m["details"].get("from") == r["subject"]["version"]
                         and replaced and m["subject"].get("version") == replaced), None)
            if back is not None:
                failures.append({"version": r["subject"]["version"], "how": f"production moved back to {replaced}",
                                 "at": back["time"]})
                restore_hours.append(_hours(_at(back) - _at(r)))
    return failures, restore_hours


def delivery_figures(entries: list[dict[str, Any]], model: str | None = None, window: dt.timedelta | None = None,
                     now: dt.datetime | None = None,
                     failure_window: dt.timedelta = dt.timedelta(hours=24)) -> dict[str, Any]:
    window = window or dt.timedelta(days=30)
    now = now or dt.datetime.now(dt.UTC)
    start = now - window

    def about(e: dict[str, Any]) -> bool:
        return model is None or e["subject"].get("model") == model

    entries = sorted((e for e in entries if about(e) or e["event"] == "dataset_version_committed"),
                     key=lambda e: e["seq"])
    committed = {(e["subject"].get("dataset"), e["subject"].get("version")): _at(e)
                 for e in entries if e["event"] == "dataset_version_committed"}
    trained_on = {(e["subject"]["model"], e["subject"]["version"]):
                  (e["details"].get("dataset"), e["details"].get("dataset_version"))
                  for e in entries if e["event"] == "model_registered"}
    releases = [e for e in entries if e["event"] == "release_finished"
                and e["subject"].get("env", PRODUCTION) == PRODUCTION]
    moves = [e for e in entries if e["event"] == "alias_moved" and e["subject"].get("alias") in (PRODUCTION,
                                                                                                 "champion")]
    in_window = [r for r in releases if start <= _at(r) <= now]
    promotions = [r for r in in_window if r["details"].get("outcome") == "Promoted"]

    lead_hours = []
    for r in promotions:
        data = trained_on.get((r["subject"]["model"], r["subject"]["version"]))
        if data in committed and committed[data] <= _at(r):
            lead_hours.append(_hours(_at(r) - committed[data]))

    failures, restore_hours = _failed_releases(in_window, moves, failure_window)

    alerts = [e for e in entries if e["event"] == "retrain_decision" and e["details"].get("drifted")
              and start <= _at(e) <= now]
    for alert in alerts:
        healed = next((r for r in releases if r["seq"] > alert["seq"] and r["details"].get("outcome") == "Promoted"),
                      None)
        if healed is not None:
            restore_hours.append(_hours(_at(healed) - _at(alert)))

    days = window.total_seconds() / 86400
    return {
        "model": model, "window_days": round(days, 4), "from": start.isoformat(timespec="seconds"),
        "to": now.isoformat(timespec="seconds"),
        "deployment_frequency_per_day": round(len(promotions) / days, 4),
        "production_promotions": len(promotions),
        "lead_time_hours": {"median": median(lead_hours) if lead_hours else None,
                            "p90": _quantile(lead_hours, 0.9), "count": len(lead_hours)},
        "change_failure_rate": round(len(failures) / len(in_window), 4) if in_window else None,
        "production_releases": len(in_window), "failed_releases": failures,
        "time_to_restore_hours": {"median": median(restore_hours) if restore_hours else None,
                                  "count": len(restore_hours), "alerts": len(alerts)},
    }
