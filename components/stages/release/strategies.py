"""Release strategies as one state machine each, driven by the one rollout loop (rollout.py) with
the canary's checks (analysis.py). Pure logic: the routers carry out the actions.

  canary     Flagger steps (analysis.advance).
  bluegreen  Argo Rollouts: preview at 0% -> pre-promotion analysis -> `switch` to 100% (or pause
             for `rollout promote` without auto_promote) -> post-promotion analysis -> promote;
             the previous version stays up through post-promotion and `scale_down_delay_s`, so a
             failure at any point is an instant `rollback` to it.
  shadow     the candidate answers mirrored copies (weight 0, answers discarded); the checks plus
             agreement with stable; passing `intervals` times turns it into a canary (or promotes).
  ab         a fixed split, sticky by key; guardrails (errors, latency) every interval, and the
             outcome (labelled accuracy) tested sequentially until a winner, no difference at the
             planned size, or a guardrail stop.
Actions: step_up, switch, promote, rollback, pause, hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.stages.release.analysis import (
    Action,
    CanaryState,
    Check,
    Phase,
    RoleMetrics,
    advance,
    run_checks,
    start,
)
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.release.experiment import (
    ExperimentState,
    fixed_sample_size_per_arm,
    look,
    sequential_sample_size_per_arm,
)

# The checks an A/B experiment stops on: the outcome metric is the experiment's own business, and
# the candidate is expected to answer differently, so divergence is not a guardrail.
GUARDRAILS = ("canary_metrics", "success_rate", "p99_latency_ms", "p99_latency_vs_stable")


@dataclass
class Plan:
    """What a rollout runs: the checks and interval (canary section) and the strategy."""

    canary: CanaryConfig
    rollout: RolloutConfig
    baseline: float | None = None  # ab planning rate when rollout.ab.baseline is unset

    @property
    def strategy(self) -> str:
        return self.rollout.strategy

    def tau(self) -> float:
        ab = self.rollout.ab
        return ab.mixture_scale or ab.mde

    def ab_baseline(self) -> float:
        ab = self.rollout.ab
        rate = ab.baseline if ab.baseline is not None else self.baseline
        if rate is None:
            raise ValueError("rollout.ab.baseline is unset and the stable version has no test accuracy to plan with")
        # a perfect (or hopeless) stable on a small test split: plan as if one answer in 200 differed
        return min(max(rate, 0.005), 0.995)


def begin(plan: Plan) -> CanaryState:
    """The state a fresh rollout starts in (Progressing)."""
    if plan.strategy == "canary":
        return start(plan.canary)
    if plan.strategy == "bluegreen":
        return CanaryState(weight=0, step=-1, phase=Phase.PROGRESSING, strategy="bluegreen", stage="preview")
    if plan.strategy == "shadow":
        return CanaryState(weight=0, step=-1, phase=Phase.PROGRESSING, strategy="shadow", stage="shadow")
    ab = plan.rollout.ab
    baseline = plan.ab_baseline()
    required = sequential_sample_size_per_arm(baseline, ab.mde, ab.alpha, ab.power, plan.tau())
    exp = ExperimentState(required_per_arm=required)
    state = CanaryState(weight=round(ab.split * 100), step=-1, phase=Phase.PROGRESSING, strategy="ab",
                        stage="experiment", experiment=exp.to_json())
    state.result = {"verdict": "running", "baseline": baseline, "required_per_arm": required,
                    "fixed_design_per_arm": fixed_sample_size_per_arm(baseline, ab.mde, ab.alpha, ab.power)}
    return state


def agreement_check(compared: int, agreed: int, plan: Plan) -> Check:
    if compared < plan.canary.min_requests:
        return Check("agreement_with_stable", None if not compared else agreed / compared,
                     plan.rollout.shadow.min_agreement, None, f"{compared} mirrored answers compared")
    share = agreed / compared
    return Check("agreement_with_stable", share, plan.rollout.shadow.min_agreement,
                 share >= plan.rollout.shadow.min_agreement, f"{agreed}/{compared} mirrored answers agree")


def interval_checks(state: CanaryState, stable: RoleMetrics, candidate: RoleMetrics, plan: Plan,
                    compared: int = 0, agreed: int = 0) -> list[Check]:
    checks = run_checks(stable, candidate, plan.canary)
    if state.strategy == "ab":
        return [c for c in checks if c.name in GUARDRAILS]
    if state.strategy == "shadow" and checks[0].name != "canary_metrics":
        checks.append(agreement_check(compared, agreed, plan))
    return checks


def _log(state: CanaryState, action: str, checks: list[Check], at: str, stage: str) -> tuple[CanaryState, str]:
    """History entry of one interval; `stage` is the stage it was analysed in (a switch or a
    shadow turning into a canary changes the state's stage on the way out)."""
    state.history.append({"at": at, "action": str(action), "weight": state.weight, "failed": state.failed,
                          "stage": stage, "checks": [c.to_json() for c in checks]})
    return state, action


def _judge(state: CanaryState, checks: list[Check], cfg: CanaryConfig) -> str | None:
    """Shared failure accounting: 'pause', 'rollback', 'hold' (failed, below threshold) or None (passed)."""
    failed = [c for c in checks if c.passed is False]
    no_data = [c for c in checks if c.passed is None]
    if no_data and cfg.no_data == "inconclusive" and not failed:
        state.phase = Phase.PAUSED
        return Action.PAUSE
    if failed or no_data:
        state.failed += 1
        state.successes = 0
        if state.failed >= cfg.threshold:
            state.phase, state.weight = Phase.ROLLED_BACK, 0
            return Action.ROLLBACK
        return Action.HOLD
    return None


def advance_rollout(state: CanaryState, checks: list[Check], plan: Plan, *, stable: RoleMetrics | None = None,
                    candidate: RoleMetrics | None = None, exhausted: bool = False,
                    at: str = "") -> tuple[CanaryState, str]:
    """One analysis interval of any strategy: the new state and the action for the router."""
    if state.phase != Phase.PROGRESSING:
        return state, Action.NONE
    if state.strategy == "canary":
        return advance(state, checks, plan.canary, at=at)
    if state.strategy == "ab":
        return _advance_ab(state, checks, plan, stable or RoleMetrics(), candidate or RoleMetrics(), exhausted, at)
    stage = state.stage
    verdict = _judge(state, checks, plan.canary)
    if verdict is not None:
        return _log(state, verdict, checks, at, stage)
    state.successes += 1
    if state.strategy == "bluegreen":
        bg = plan.rollout.bluegreen
        if state.stage == "preview" and state.successes >= bg.pre_promotion_intervals:
            if not bg.auto_promote:
                state.phase = Phase.PAUSED
                return _log(state, Action.PAUSE, checks, at, stage)
            return _log(switch(state), Action.SWITCH, checks, at, stage)
        if state.stage == "post_promotion" and state.successes >= bg.post_promotion_intervals:
            state.phase, state.weight = Phase.PROMOTED, 100
            return _log(state, Action.PROMOTE, checks, at, stage)
        return _log(state, Action.HOLD, checks, at, stage)
    # shadow
    if state.successes >= plan.rollout.shadow.intervals:
        if plan.rollout.shadow.then == "promote":
            state.phase, state.weight = Phase.PROMOTED, 100
            return _log(state, Action.PROMOTE, checks, at, stage)
        state.strategy, state.stage, state.step = "canary", "", 0
        state.weight, state.successes, state.failed = plan.canary.step_weights[0], 0, 0
        return _log(state, Action.STEP_UP, checks, at, "shadow -> canary")
    return _log(state, Action.HOLD, checks, at, stage)


def switch(state: CanaryState) -> CanaryState:
    """Blue-green: all traffic to the candidate in one step; post-promotion analysis starts afresh
    (Argo runs it as a separate AnalysisRun, so failures before the switch do not count after it)."""
    state.stage, state.weight, state.successes, state.failed = "post_promotion", 100, 0, 0
    state.phase = Phase.PROGRESSING
    return state


def _advance_ab(state: CanaryState, checks: list[Check], plan: Plan, stable: RoleMetrics, candidate: RoleMetrics,
                exhausted: bool, at: str) -> tuple[CanaryState, str]:
    ab, stage = plan.rollout.ab, state.stage
    exp = ExperimentState.from_json(state.experiment)
    verdict = look(exp, (stable.labelled, stable.correct), (candidate.labelled, candidate.correct),
                   tau=plan.tau(), alpha=ab.alpha)
    state.experiment = exp.to_json()
    result = state.result = {**(state.result or {}), "effect": exp.effect, "low": exp.low, "high": exp.high,
                             "p_value": exp.p_value, "n": {"stable": exp.stable.n, "candidate": exp.candidate.n}}
    guard = _judge(state, checks, plan.canary)
    if guard in (Action.ROLLBACK, Action.PAUSE):
        failing = [c.name for c in checks if c.passed is not True]
        result.update(verdict="stopped_by_guardrail" if guard == Action.ROLLBACK else "inconclusive", winner=None,
                      reason=f"guardrail {'breached' if guard == 'rollback' else 'without data'}: "
                             f"{', '.join(failing)}")
        return _log(state, guard, checks, at, stage)
    if verdict is None and exhausted:
        state.phase = Phase.PAUSED
        result.update(verdict="inconclusive", winner=None,
                      reason=f"labelled traffic ran out at {min(exp.stable.n, exp.candidate.n)} per arm, "
                             f"before the planned {exp.required_per_arm}")
        return _log(state, Action.PAUSE, checks, at, stage)
    if verdict is None:
        return _log(state, Action.HOLD, checks, at, stage)
    significant = f"p = {exp.p_value:.3g} <= alpha {ab.alpha}"
    if verdict == "candidate":
        state.phase, state.weight = Phase.PROMOTED, 100
        result.update(verdict="winner", winner="candidate", reason=f"candidate better: {significant}")
        return _log(state, Action.PROMOTE, checks, at, stage)
    if verdict == "stable":
        state.phase, state.weight = Phase.ROLLED_BACK, 0
        result.update(verdict="winner", winner="stable", reason=f"stable better: {significant}")
        return _log(state, Action.ROLLBACK, checks, at, stage)
    result.update(verdict="no_difference", winner=None,
                  reason=f"no difference of at least {ab.mde} at the planned {exp.required_per_arm} per arm "
                         f"(p = {exp.p_value:.3g}); {ab.on_no_difference.replace('_', ' ')}")
    if ab.on_no_difference == "promote":
        state.phase, state.weight = Phase.PROMOTED, 100
        return _log(state, Action.PROMOTE, checks, at, stage)
    state.phase, state.weight = Phase.ROLLED_BACK, 0
    return _log(state, Action.ROLLBACK, checks, at, stage)
