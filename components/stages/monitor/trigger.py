"""The retraining trigger: turns a window's drift verdict into retrain / wait / insufficient data,
with guardrails (debounce over consecutive windows, cooldown after a retrain, a daily cap).

Pure: the decision history is passed in and the new decision returned; `record` / `history` keep
them in the store (monitoring/<model>/decisions/) so every decision is kept with its evidence.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from components.common import audit
from components.common.layout import decision_key, decisions_prefix
from components.stages.monitor.config import TriggerPolicy


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


def decide(policy: TriggerPolicy, verdict: dict[str, Any], history: list[dict[str, Any]],
           now: dt.datetime) -> dict[str, Any]:
    """history: earlier decisions, oldest first. Returns the new decision (not yet recorded)."""
    decision: dict[str, Any] = {"at": now.isoformat(timespec="seconds"), "window": verdict.get("window"),
                                "signals": verdict.get("signals", {}), "drifted": False, "reasons": []}
    if verdict.get("status") == "insufficient_data":
        decision.update(action="insufficient_data", reasons=[verdict.get("reason", "too few rows")])
        return decision
    signals = verdict.get("signals", {})
    fired = [s for s in policy.signals if signals.get(s)]
    decision["drifted"] = bool(fired)
    if not fired:
        decision.update(action="wait", reasons=["no drift in the counted signals "
                                                f"({', '.join(policy.signals)})"])
        return decision
    # windows with insufficient data neither count toward nor break the debounce run
    judged = [d for d in history if d.get("action") != "insufficient_data"]
    run = 1
    for earlier in reversed(judged):
        if not earlier.get("drifted"):
            break
        run += 1
    reasons = [f"drift in {', '.join(fired)}"]
    if run < policy.consecutive_windows:
        decision.update(action="wait", reasons=[*reasons, f"debounce: {run} of {policy.consecutive_windows} "
                                                          "consecutive drifted windows"])
        return decision
    retrains = [_parse(d["at"]) for d in history if d.get("action") == "retrain"]
    if retrains and now - max(retrains) < dt.timedelta(hours=policy.cooldown_hours):
        since = (now - max(retrains)).total_seconds() / 3600
        decision.update(action="wait", reasons=[*reasons, f"cooldown: last retrain {since:.1f} h ago "
                                                          f"(< {policy.cooldown_hours:g} h)"])
        return decision
    today = [t for t in retrains if now - t < dt.timedelta(days=1)]
    if len(today) >= policy.max_retrains_per_day:
        decision.update(action="wait", reasons=[*reasons, f"daily cap: {len(today)} retrains in the last 24 h"])
        return decision
    decision.update(action="retrain", reasons=[*reasons, f"{run} consecutive drifted window(s)"])
    return decision


def history(store, model: str) -> list[dict[str, Any]]:
    keys = sorted(store.list(decisions_prefix(model)))
    return [store.read_json(k) for k in keys if k.endswith(".json")]


def record(store, model: str, decision: dict[str, Any]) -> str:
    stamp = decision["at"].replace(":", "").replace("+0000", "Z")
    key = decision_key(model, stamp, decision["action"])
    store.write_json(key, decision)
    audit.append(store, "retrain_decision", {"model": model},
                 {"outcome": decision["action"], "drifted": decision.get("drifted"),
                  "signals": decision.get("signals"), "reasons": decision.get("reasons"), "record": key})
    return store.url(key)
