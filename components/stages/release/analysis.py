"""Canary analysis, Flagger/Argo-Rollouts style. Pure decision logic shared by the local backend
(model servers on loopback, /metrics scraped directly) and the cluster (Prometheus, KServe).

Every interval the checks run on what each role served since the last interval:
  success rate (non-5xx share), p99 latency, prediction-distribution divergence canary vs stable
  (Jensen-Shannon), and accuracy on labelled replay traffic vs stable.
A failed check - or a check with no data, unless `no_data: inconclusive` - counts toward
`threshold`; reaching it rolls back. All checks passing `step_successes` times in a row steps the
weight up; passing at `max_weight` promotes. Inconclusive pauses for a human.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any

from components.stages.release.config import CanaryConfig


class Phase(StrEnum):
    """Where a rollout stands (kept as these strings on the InferenceService and in records)."""

    INITIALIZED = "Initialized"
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"


class Action(StrEnum):
    """What one analysis interval (or a person's verb) asks the router to do."""

    STEP_UP = "step_up"
    SWITCH = "switch"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    HOLD = "hold"
    NONE = "none"


@dataclass
class RoleMetrics:
    """What one role served during one interval (deltas, not totals)."""

    requests: float = 0.0
    errors_5xx: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> count
    predicted: dict[str, float] = field(default_factory=dict)
    labelled: int = 0
    correct: int = 0
    reachable: bool = True

    def p99_ms(self) -> float | None:
        return histogram_quantile(0.99, self.latency_buckets)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (upper bound -> count), in ms."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound * 1000
            share = (rank - prev_count) / (count - prev_count) if count > prev_count else 0
            return (prev_bound + (bound - prev_bound) * share) * 1000
        prev_bound, prev_count = bound, count
    return prev_bound * 1000


def js_distance(p: dict[str, float], q: dict[str, float]) -> float:
    keys = sorted(set(p) | set(q))
    a = [p.get(k, 0.0) for k in keys]
    b = [q.get(k, 0.0) for k in keys]
    sa, sb = sum(a), sum(b)
    if not sa or not sb:
        return float("nan")
    a = [x / sa for x in a]
    b = [x / sb for x in b]
    m = [(x + y) / 2 for x, y in zip(a, b, strict=True)]

    def kl(x, y):
        return sum(xi * math.log2(xi / yi) for xi, yi in zip(x, y, strict=True) if xi > 0)

    return math.sqrt(max(0.0, (kl(a, m) + kl(b, m)) / 2))


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float
    passed: bool | None  # None: no data
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["detail"] is None:
            del out["detail"]
        return out


def run_checks(stable: RoleMetrics, canary: RoleMetrics, cfg: CanaryConfig) -> list[Check]:
    checks: list[Check] = []
    if not canary.reachable or canary.requests < cfg.min_requests:
        value = None if not canary.reachable else canary.requests
        return [Check("canary_metrics", value, cfg.min_requests, None)]
    rate = 1 - canary.errors_5xx / canary.requests
    checks.append(Check("success_rate", rate, cfg.min_success_rate, rate >= cfg.min_success_rate))
    p99 = canary.p99_ms()
    checks.append(Check("p99_latency_ms", p99, cfg.max_p99_latency_ms,
                        None if p99 is None else p99 <= cfg.max_p99_latency_ms))
    stable_p99 = stable.p99_ms() if stable.reachable else None
    if p99 is not None and stable_p99:
        ratio = p99 / stable_p99
        checks.append(Check("p99_latency_vs_stable", ratio, cfg.max_latency_ratio, ratio <= cfg.max_latency_ratio))
    if stable.reachable and stable.predicted and canary.predicted:
        js = js_distance(stable.predicted, canary.predicted)
        checks.append(Check("prediction_js_vs_stable", js, cfg.max_prediction_js, js <= cfg.max_prediction_js))
    if canary.labelled >= cfg.min_labelled and stable.labelled >= cfg.min_labelled:
        drop = stable.correct / stable.labelled - canary.correct / canary.labelled
        low = accuracy_drop_lower_bound(stable.correct, stable.labelled, canary.correct, canary.labelled,
                                        cfg.accuracy_confidence)
        detail = (f"stable {stable.correct:g}/{stable.labelled:g}, canary {canary.correct:g}/{canary.labelled:g}; "
                  f"drop is at least {low:.4f} with {cfg.accuracy_confidence:.0%} confidence")
        checks.append(Check("labelled_accuracy_drop_vs_stable", drop, cfg.max_accuracy_drop,
                            low <= cfg.max_accuracy_drop, detail))
    return checks


def wilson_interval(successes: float, n: float, z: float) -> tuple[float, float]:
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_drop_lower_bound(stable_correct: float, stable_n: float, canary_correct: float, canary_n: float,
                              confidence: float) -> float:
    """One-sided lower confidence bound of (stable accuracy - canary accuracy): Newcombe's hybrid
    score interval (1998, method 10), sound near 0 and 1 where accuracies live."""

    z = NormalDist().inv_cdf(confidence)
    p1, p2 = stable_correct / stable_n, canary_correct / canary_n
    l1, _u1 = wilson_interval(stable_correct, stable_n, z)
    _l2, u2 = wilson_interval(canary_correct, canary_n, z)
    return (p1 - p2) - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)


@dataclass
class CanaryState:
    weight: int = 0
    step: int = -1             # index into step_weights; -1 before the first step
    failed: int = 0            # failed checks so far (Flagger's failedChecks)
    successes: int = 0         # consecutive passing intervals at this weight
    phase: Phase = Phase.INITIALIZED
    history: list[dict[str, Any]] = field(default_factory=list)
    strategy: str = "canary"    # canary | bluegreen | ab | shadow (components.stages.release.strategies)
    stage: str = ""             # bluegreen: preview | post_promotion; shadow: shadow; ab: experiment
    experiment: dict[str, Any] | None = None  # ab: ExperimentState.to_json()
    result: dict[str, Any] | None = None      # ab: verdict, winner, effect, interval, p-value
    # what people did to it (kubectl conveyor promote|rollback|pause|resume): verb, who (as the API
    # server authenticated them), when; the release step puts each in the audit log
    verbs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = str(self.phase)  # plain strings for YAML, JSON and annotations alike
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CanaryState:
        known = {f for f in cls.__dataclass_fields__}
        state = cls(**{k: v for k, v in raw.items() if k in known})
        state.phase = Phase(state.phase)
        return state


def start(cfg: CanaryConfig) -> CanaryState:
    return CanaryState(weight=cfg.step_weights[0], step=0, phase=Phase.PROGRESSING)


def advance(state: CanaryState, checks: list[Check], cfg: CanaryConfig, at: str = "") -> tuple[CanaryState, str]:
    """One analysis interval: returns the new state and the action taken."""
    if state.phase not in (Phase.PROGRESSING,):
        return state, Action.NONE
    failed = [c for c in checks if c.passed is False]
    no_data = [c for c in checks if c.passed is None]
    if no_data and cfg.no_data == "inconclusive" and not failed:
        action = Action.PAUSE
        state.phase = Phase.PAUSED
    else:
        if failed or no_data:
            state.failed += 1
            state.successes = 0
            action = Action.HOLD
            if state.failed >= cfg.threshold:
                state.phase, state.weight, action = Phase.ROLLED_BACK, 0, Action.ROLLBACK
        else:
            state.successes += 1
            action = Action.HOLD
            if state.successes >= cfg.step_successes:
                if state.weight >= cfg.max_weight or state.step + 1 >= len(cfg.step_weights):
                    state.phase, state.weight, action = Phase.PROMOTED, 100, Action.PROMOTE
                else:
                    state.step += 1
                    state.weight = cfg.step_weights[state.step]
                    state.successes = 0
                    action = Action.STEP_UP
    state.history.append({"at": at, "action": str(action), "weight": state.weight, "failed": state.failed,
                          "checks": [c.to_json() for c in checks]})
    return state, action


def describe(checks: list[Check]) -> str:
    """One line per interval for logs and Kubernetes Events."""
    parts = []
    for c in checks:
        value = "no data" if c.value is None else f"{c.value:.4g}"
        verdict = {True: "ok", False: "FAILED", None: "no data"}[c.passed]
        parts.append(f"{c.name}={value} (limit {c.threshold:g}, {verdict})")
    return "; ".join(parts)
