"""A/B experiment statistics: sample size up front, an always-valid sequential test while it runs,
sticky assignment of request keys to arms. Pure functions; the rollout loop calls them.

Outcome: a proportion per arm (labelled answers that were correct, or any labelled 0/1 outcome).
  Sample size   the fixed-design size per arm for a two-sided test of two proportions at
                (alpha, power) and a minimum detectable effect (Fleiss' formula without continuity
                correction; statsmodels' samplesize_proportions_2indep_onetail gives the same).
  Sequential    mixture SPRT (Johari, Pekelis, Walsh 2017, "Always valid inference"): the
                difference of proportions is roughly N(delta, s^2); with a N(0, tau^2) mixture over
                delta the likelihood ratio against delta = 0 is
                    L = sqrt(s^2 / (s^2 + tau^2)) * exp(d^2 tau^2 / (2 s^2 (s^2 + tau^2))),
                and p = min over looks of 1/L stays valid however often one looks, so the
                experiment may stop at any interval where p <= alpha. Inverting the same test
                gives a confidence sequence for delta (the reported interval), which excludes 0
                exactly when p <= alpha.
The variance is estimated from the data (add-one smoothed proportions, so an arm with no errors
yet does not claim zero variance); the A/A false-positive rate of the whole procedure is measured
by simulation in the tests rather than assumed.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

_N = NormalDist()


def _alternative(baseline: float, mde: float) -> tuple[float, float]:
    """(p1, p2) for planning: the alternative toward 0.5, whose larger variance makes the size
    enough for an effect of `mde` in either direction."""
    if not 0 < baseline < 1:
        raise ValueError(f"baseline must lie in (0, 1), got {baseline}")
    if not 0 < mde < 1:
        raise ValueError(f"minimum detectable effect must lie in (0, 1), got {mde}")
    p2 = baseline - mde if baseline > 0.5 else baseline + mde
    if not 0 < p2 < 1:
        raise ValueError(f"baseline {baseline} and mde {mde} leave (0, 1): no effect of that size can be seen")
    return baseline, p2


def fixed_sample_size_per_arm(baseline: float, mde: float, alpha: float, power: float) -> int:
    """Per-arm size of a one-look two-sided test of two proportions (Fleiss, no continuity
    correction): what a fixed-horizon A/B test would need. Reported for comparison."""
    p1, p2 = _alternative(baseline, mde)
    z_a, z_b = _N.inv_cdf(1 - alpha / 2), _N.inv_cdf(power)
    pooled = (p1 + p2) / 2
    root = z_a * math.sqrt(2 * pooled * (1 - pooled)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (mde * mde))


def _half_width(s2: float, tau: float, alpha: float) -> float:
    t2 = tau * tau
    return math.sqrt(2 * s2 * (s2 + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((s2 + t2) / s2)))


def sequential_sample_size_per_arm(baseline: float, mde: float, alpha: float, power: float, tau: float) -> int:
    """Per-arm size at which the mixture SPRT below rejects with probability >= power when the
    true effect is `mde`: the smallest n with (mde - h(n)) / s(n) >= z_power, h being the test's
    rejection half-width at n. Early looks only add rejections, so this is a safe horizon; the
    price of looking at every interval is a larger horizon than the fixed design's (about 2x at
    alpha 0.05, power 0.8), while the expected size is smaller when the effect is real."""
    p1, p2 = _alternative(baseline, mde)
    variance, z_b = p1 * (1 - p1) + p2 * (1 - p2), _N.inv_cdf(power)

    def enough(n: int) -> bool:
        s2 = variance / n
        return (mde - _half_width(s2, tau, alpha)) / math.sqrt(s2) >= z_b

    high = 1
    while not enough(high):
        high *= 2
    low = high // 2
    while low + 1 < high:  # enough() is monotone in n over this range: bisect
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def assign_arm(key: str | None, candidate_share: float, salt: str, rng: random.Random | None = None) -> str:
    """'candidate' or 'stable'. A key always lands in the same arm for one salt (the experiment),
    and a fresh salt reshuffles keys, so one experiment's assignment does not carry into the next.
    Unkeyed requests are assigned at random."""
    if key is None:
        draw = (rng or random).random()
    else:
        digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
    return "candidate" if draw < candidate_share else "stable"


@dataclass
class ArmCounts:
    n: int = 0
    successes: int = 0

    def rate(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    def smoothed(self) -> float:
        return (self.successes + 1) / (self.n + 2)


@dataclass
class SequentialResult:
    effect: float            # candidate rate - stable rate
    low: float               # always-valid confidence interval for the effect
    high: float
    p_value: float           # always-valid p-value (running minimum)
    likelihood_ratio: float


def difference_variance(stable: ArmCounts, candidate: ArmCounts) -> float:
    a, b = stable.smoothed(), candidate.smoothed()
    return a * (1 - a) / stable.n + b * (1 - b) / candidate.n


def msprt(stable: ArmCounts, candidate: ArmCounts, tau: float, alpha: float,
          previous_p: float = 1.0, previous_interval: tuple[float, float] = (-1.0, 1.0)) -> SequentialResult:
    """One look of the mixture SPRT. Carry `p_value` and (low, high) from the last look: the
    running minimum and intersection are what make them valid at any stopping time."""
    if stable.n == 0 or candidate.n == 0:
        return SequentialResult(float("nan"), *previous_interval, previous_p, 1.0)
    effect = candidate.rate() - stable.rate()
    s2, t2 = difference_variance(stable, candidate), tau * tau
    log_lr = 0.5 * math.log(s2 / (s2 + t2)) + effect * effect * t2 / (2 * s2 * (s2 + t2))
    p_value = min(previous_p, 1.0, math.exp(-log_lr))
    half = _half_width(s2, tau, alpha)
    low, high = max(previous_interval[0], effect - half), min(previous_interval[1], effect + half)
    if low > high:  # the running intersection emptied: only possible when the plug-in variance moved
        low = high = effect
    return SequentialResult(effect, low, high, p_value, math.exp(min(log_lr, 700)))


@dataclass
class ExperimentState:
    """Cumulative counts and the sequential test's carried values (stored with the rollout)."""

    required_per_arm: int
    stable: ArmCounts = field(default_factory=ArmCounts)
    candidate: ArmCounts = field(default_factory=ArmCounts)
    p_value: float = 1.0
    low: float = -1.0
    high: float = 1.0
    effect: float | None = None
    looks: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExperimentState:
        raw = dict(raw)
        raw["stable"], raw["candidate"] = ArmCounts(**raw["stable"]), ArmCounts(**raw["candidate"])
        return cls(**raw)


def look(exp: ExperimentState, stable_new: tuple[int, int], candidate_new: tuple[int, int], *, tau: float,
         alpha: float) -> str | None:
    """Add one interval's labelled (n, successes) per arm and test. Returns 'candidate' or
    'stable' when a winner is significant, 'no_difference' at the planned size, else None."""
    exp.stable.n += stable_new[0]
    exp.stable.successes += stable_new[1]
    exp.candidate.n += candidate_new[0]
    exp.candidate.successes += candidate_new[1]
    if exp.stable.n == 0 or exp.candidate.n == 0:
        return None
    exp.looks += 1
    result = msprt(exp.stable, exp.candidate, tau, alpha, exp.p_value, (exp.low, exp.high))
    exp.p_value, exp.low, exp.high, exp.effect = result.p_value, result.low, result.high, result.effect
    if exp.p_value <= alpha:
        return "candidate" if result.effect > 0 else "stable"
    if min(exp.stable.n, exp.candidate.n) >= exp.required_per_arm:
        return "no_difference"
    return None


def report_markdown(result: dict[str, Any]) -> str:
    """The experiment's result as a short Markdown report (stored next to the deployment record)."""
    exp = result["experiment"]
    lines = [f"# A/B experiment: {result['candidate']} vs {result['stable']}", "",
             f"**Verdict: {result['verdict'].replace('_', ' ')}**"
             + (f" (winner {result['winner']})" if result.get("winner") else ""),
             "", f"- reason: {result['reason']}",
             f"- outcome metric: {result['metric']}; split {result['split']:.0%} to the candidate, "
             f"sticky by `{result['key'] or 'none (random)'}`",
             f"- planned sample size: {exp['required_per_arm']} per arm "
             f"(mde {result['mde']}, alpha {result['alpha']}, power {result['power']})", "",
             "| arm | version | n | correct | rate |", "|---|---|---:|---:|---:|"]
    for arm in ("stable", "candidate"):
        counts = exp[arm]
        rate = counts["successes"] / counts["n"] if counts["n"] else float("nan")
        lines.append(f"| {arm} | {result[arm]} | {counts['n']} | {counts['successes']} | {rate:.4f} |")
    effect = exp.get("effect")
    lines += ["", f"- effect (candidate - stable): {'n/a' if effect is None else f'{effect:+.4f}'}",
              f"- always-valid {1 - result['alpha']:.0%} confidence interval: [{exp['low']:+.4f}, {exp['high']:+.4f}]",
              f"- always-valid p-value: {exp['p_value']:.4g} after {exp['looks']} looks"]
    if result.get("guardrail"):
        lines.append(f"- guardrail: {result['guardrail']}")
    return "\n".join(lines) + "\n"
