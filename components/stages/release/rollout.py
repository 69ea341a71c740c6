"""The one rollout loop, Flagger's scheduler in small: every interval, read what stable and canary
served, run the checks, advance the state, and have the router carry out the action.

Two small interfaces keep it backend-free:
  Router         where the traffic split lives and who applies it: two local model servers
                 (`local.py`), or one InferenceService (`cluster.py`, state kept on the object so
                 `kubectl conveyor canary ...` can pause, promote or roll back meanwhile);
  MetricsSource  what one model version served since the last interval: each local server's
                 /metrics, or Prometheus.
A Replay (optional) sends labelled rows and says who answered them, for the accuracy check
(and, when each row went to both, whether they agreed: the shadow's agreement check).
The checks are `analysis.py`; each strategy's state machine is `strategies.py`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from components.stages.release.analysis import CanaryState, RoleMetrics, describe
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.release.strategies import Plan, advance_rollout, interval_checks


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

    def take_problems(self) -> list[str]:
        """Why snapshots since the last call had no data (each said once: the call clears them)."""


@dataclass
class ReplayTally:
    """One interval of labelled replay."""

    labelled: dict[str, tuple[int, int]] = field(default_factory=dict)  # version -> (answered, correct)
    compared: int = 0      # rows both versions answered (shadow, blue-green)
    agreed: int = 0        # ... with the same label
    exhausted: bool = False  # no labelled rows left to send (an experiment must not reuse units)


class Replay(Protocol):
    def round(self, state: CanaryState) -> ReplayTally:
        """Send one interval's labelled rows, routed as `state` says."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def observers(*functions: Callable[[CanaryState], None] | None) -> Callable[[CanaryState], None] | None:
    """One `observe` calling each given one in turn (None: none given)."""
    chosen = [f for f in functions if f is not None]
    if not chosen:
        return None

    def observe(state: CanaryState) -> None:
        for function in chosen:
            function(state)

    return observe


def as_plan(cfg: CanaryConfig | Plan) -> Plan:
    return cfg if isinstance(cfg, Plan) else Plan(cfg, RolloutConfig())


def run_rollout(router: Router, metrics: MetricsSource, replay: Replay | None, cfg: CanaryConfig | Plan, *,
                wait: Callable[[float], None] = time.sleep, once: bool = False,
                log: Callable[[str], None] = print,
                observe: Callable[[CanaryState], None] | None = None) -> CanaryState:
    """Intervals until the rollout is promoted, rolled back or paused (or one interval, with once).
    `observe` sees the state after every interval (components.stages.release.gauges publishes it)."""
    plan = as_plan(cfg)
    while True:
        state = router.state()
        if state is None or state.phase != "Progressing":
            log(f"{state.phase if state else 'no rollout'}; nothing to analyse")
            return state or CanaryState(phase="None")
        stable, candidate = router.versions()
        wait(plan.canary.interval_s)
        state = router.state()  # a human may have paused or rolled back while we waited
        if state is None or state.phase != "Progressing":
            continue
        started = time.monotonic()
        tally = replay.round(state) if replay is not None else ReplayTally()
        stable_m, canary_m = metrics.snapshot(stable), metrics.snapshot(candidate)
        for version, seen in ((stable, stable_m), (candidate, canary_m)):
            seen.labelled, seen.correct = tally.labelled.get(version, (0, 0))
        checks = interval_checks(state, stable_m, canary_m, plan, tally.compared, tally.agreed)
        state, action = advance_rollout(state, checks, plan, stable=stable_m, candidate=canary_m,
                                        exhausted=tally.exhausted, at=now())
        state.history[-1]["seconds"] = round(time.monotonic() - started, 2)
        evidence = describe(checks)
        if state.result and state.strategy == "ab":
            evidence += f"; experiment: {state.result.get('reason') or 'running'}"
        problems = metrics.take_problems()
        if problems:  # the reason behind "no data" goes into the Event and the log
            evidence += f"; metrics source: {problems[-1]}"
        router.apply(state, action, evidence)
        if observe is not None:
            observe(state)
        if once or state.phase != "Progressing":
            return state
