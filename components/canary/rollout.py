"""The one rollout loop, Flagger's scheduler in small: every interval, read what stable and canary
served, run the checks, advance the state, and have the router carry out the action.

Two small interfaces keep it backend-free:
  Router         where the traffic split lives and who applies it: two local model servers
                 (`local.py`), or one InferenceService (`cluster.py`, state kept on the object so
                 `kubectl conveyor canary ...` can pause, promote or roll back meanwhile);
  MetricsSource  what one model version served since the last interval: each local server's
                 /metrics, or Prometheus.
A Replay (optional) sends labelled rows and says who answered them, for the accuracy check.
The checks and the state machine are `analysis.py`, shared unchanged.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol

from components.canary.analysis import CanaryState, RoleMetrics, advance, describe, run_checks
from components.canary.config import CanaryConfig


class Router(Protocol):
    def state(self) -> CanaryState | None:
        """The rollout's state as it stands now (None: there is no rollout)."""

    def versions(self) -> tuple[str, str]:
        """(stable, candidate) model versions of the rollout in progress."""

    def apply(self, state: CanaryState, action: str, evidence: str) -> None:
        """Carry out `action` (step_up, promote, rollback, pause, hold) and store `state`."""


class MetricsSource(Protocol):
    def snapshot(self, version: str) -> RoleMetrics:
        """What `version` served since the previous snapshot (reachable=False when unknown)."""


class Replay(Protocol):
    def round(self, weight: int) -> dict[str, tuple[int, int]]:
        """Send one interval's labelled rows; returns version -> (answered, correct)."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_rollout(router: Router, metrics: MetricsSource, replay: Replay | None, cfg: CanaryConfig, *,
                wait: Callable[[float], None] = time.sleep, once: bool = False,
                log: Callable[[str], None] = print) -> CanaryState:
    """Intervals until the rollout is promoted, rolled back or paused (or one interval, with once)."""
    while True:
        state = router.state()
        if state is None or state.phase != "Progressing":
            log(f"{state.phase if state else 'no rollout'}; nothing to analyse")
            return state or CanaryState(phase="None")
        stable, candidate = router.versions()
        wait(cfg.interval_s)
        state = router.state()  # a human may have paused or rolled back while we waited
        if state is None or state.phase != "Progressing":
            continue
        started = time.monotonic()
        labelled = replay.round(state.weight) if replay is not None else {}
        stable_m, canary_m = metrics.snapshot(stable), metrics.snapshot(candidate)
        for version, seen in ((stable, stable_m), (candidate, canary_m)):
            seen.labelled, seen.correct = labelled.get(version, (0, 0))
        checks = run_checks(stable_m, canary_m, cfg)
        state, action = advance(state, checks, cfg, at=now())
        state.history[-1]["seconds"] = round(time.monotonic() - started, 2)
        evidence = describe(checks)
        problems = getattr(metrics, "errors", None)
        if problems:  # the reason behind "no data" goes into the Event and the log
            evidence += f"; metrics source: {problems[-1]}"
            problems.clear()
        router.apply(state, action, evidence)
        if once or state.phase != "Progressing":
            return state
