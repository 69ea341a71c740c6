"""Pre-production verification: the candidate deployed in its own environment (staging) and
checked on replayed labelled traffic with the canary's own checks (success rate, p99 latency,
prediction divergence and labelled accuracy against the production model, agreement with it),
interval after interval, until it passes `verify_intervals` in a row, fails `threshold` times,
or runs out of `verify_max_intervals`.

With no production model yet (the first deployment) there is nothing to compare against: the
checks are the candidate's own (success rate, latency), and its labelled accuracy on the replay
must not fall below its own test accuracy by more than `max_accuracy_drop` (what was evaluated
is what serves).
"""

from __future__ import annotations

from typing import Any

from components.common.errors import NotFoundError
from components.stages.registry.store import PRODUCTION_ALIAS, resolve_version, test_accuracy
from components.stages.release.analysis import CanaryState, Check, Phase, RoleMetrics, describe
from components.stages.release.config import CanaryConfig, EnvironmentConfig, RolloutConfig
from components.stages.release.strategies import Plan, interval_checks


def own_accuracy_check(candidate: RoleMetrics, test_accuracy: float | None, cfg: CanaryConfig) -> Check | None:
    if test_accuracy is None or candidate.labelled < cfg.min_labelled:
        return None
    accuracy = candidate.correct / candidate.labelled
    floor = test_accuracy - cfg.max_accuracy_drop
    return Check("labelled_accuracy_vs_test", accuracy, floor, accuracy >= floor,
                 f"{candidate.correct:g}/{candidate.labelled:g} right; test accuracy {test_accuracy:.4f}")


def staging_checks(production: RoleMetrics | None, candidate: RoleMetrics, cfg: CanaryConfig,
                   test_accuracy: float | None, compared: int = 0, agreed: int = 0) -> list[Check]:
    """One interval's checks: the shadow strategy's (all the canary's plus agreement) against
    production, or the candidate's own when there is no production model."""
    if production is not None:
        state = CanaryState(strategy="shadow", stage="shadow", phase=Phase.PROGRESSING)
        return interval_checks(state, production, candidate, Plan(cfg, RolloutConfig(strategy="shadow")),
                               compared, agreed)
    checks = interval_checks(CanaryState(phase=Phase.PROGRESSING), RoleMetrics(reachable=False), candidate,
                             Plan(cfg, RolloutConfig()))
    own = own_accuracy_check(candidate, test_accuracy, cfg)
    return checks + ([own] if own is not None else [])


class Verdict:
    """Counts intervals to a verdict: `verify_intervals` passing in a row, or `threshold` failed."""

    def __init__(self, env: EnvironmentConfig, cfg: CanaryConfig):
        self.env, self.cfg = env, cfg
        self.streak = self.failed = 0
        self.intervals: list[dict[str, Any]] = []

    def add(self, checks: list[Check]) -> bool | None:
        """True: verified; False: failed; None: go on."""
        ok = all(c.passed is True for c in checks)
        self.streak = self.streak + 1 if ok else 0
        self.failed += not ok
        self.intervals.append({"passed": ok, "checks": [c.to_json() for c in checks], "evidence": describe(checks)})
        if self.streak >= self.env.verify_intervals:
            return True
        if self.failed >= self.cfg.threshold or len(self.intervals) >= self.env.verify_max_intervals:
            return False
        return None

    def reason(self, verified: bool) -> str:
        if verified:
            return f"{self.streak} passing intervals in a row out of {len(self.intervals)}"
        failing = sorted({c["name"] for i in self.intervals for c in i["checks"] if c["passed"] is not True})
        return (f"{self.failed} failed intervals out of {len(self.intervals)} (threshold {self.cfg.threshold}); "
                f"failing checks: {', '.join(failing) or 'none'}")


def production_version(store, model: str) -> str | None:
    try:
        return resolve_version(store, model, PRODUCTION_ALIAS)
    except NotFoundError:
        return None


def verify_local(store, model: str, candidate: str, texts: list[str], labels: list[str], cfg: CanaryConfig,
                 env: EnvironmentConfig, log=print, requests_per_interval: int = 60,
                 chaos: list[str] | None = None) -> dict[str, Any]:
    """Deploy `candidate` to `env` as its own model server beside the production model's, replay
    the labelled rows to both every interval, and judge. Returns {passed, reason, stable, intervals}."""
    # lazy: the model-server processes and their replay are needed only here
    from components.stages.release.local import LocalMetricsSource, Replayer
    from components.stages.serve.infra import ServerProcess, http_json, new_client_auth

    stable = production_version(store, model)
    if stable == candidate:
        return {"passed": True, "stable": stable, "reason": "already in production", "intervals": []}
    auth = new_client_auth()  # both servers require it; the replay and warm-up send it
    servers = {candidate: ServerProcess(f"{model}@{candidate}", store.uri, name=env.name, role="canary",
                                        env=env.name, extra=chaos, wait=False, auth=auth)}
    if stable is not None:
        servers[stable] = ServerProcess(f"{model}@{stable}", store.uri, name="production", role="stable",
                                        env="production", wait=False, auth=auth)
    try:
        for server in servers.values():
            server.wait_ready()
        urls = {v: f"{s.url}/v1/models/{s.name}:predict" for v, s in servers.items()}
        metrics = LocalMetricsSource({v: f"{s.url}/metrics" for v, s in servers.items()}, model)
        for url in urls.values():  # a fresh process's first requests are not its latency
            for text in texts[:30]:
                http_json(url, {"instances": [text]}, timeout=10, auth=auth)
        for version in servers:
            metrics.snapshot(version)
        # shadow routing sends every row to both; with no production, weight 100 sends all to the candidate
        state = (CanaryState(strategy="shadow", stage="shadow", phase=Phase.PROGRESSING) if stable is not None
                 else CanaryState(weight=100, phase=Phase.PROGRESSING))
        replay = Replayer(texts, labels, urls, stable or candidate, candidate, cfg, requests_per_interval, auth=auth)
        verdict, own_test = Verdict(env, cfg), test_accuracy(store, model, candidate)
        log(f"{env.name}: {candidate} deployed on {servers[candidate].url}; verifying against "
            + (f"production {stable}" if stable else "its own test accuracy (no production model yet)"))
        while True:
            tally = replay.round(state)
            cand_m = metrics.snapshot(candidate)
            cand_m.labelled, cand_m.correct = tally.labelled.get(candidate, (0, 0))
            prod_m = None
            if stable is not None:
                prod_m = metrics.snapshot(stable)
                prod_m.labelled, prod_m.correct = tally.labelled.get(stable, (0, 0))
            checks = staging_checks(prod_m, cand_m, cfg, own_test, tally.compared, tally.agreed)
            done = verdict.add(checks)
            failed = [c.name for c in checks if c.passed is not True]
            log(f"  {env.name} interval {len(verdict.intervals)}: " + ("passed" if not failed else
                                                                      f"failed ({', '.join(failed)})"))
            if done is not None:
                return {"passed": done, "stable": stable, "reason": verdict.reason(done),
                        "checks": verdict.intervals[-1]["checks"], "intervals": verdict.intervals,
                        "requests_failed": replay.failures}
    finally:
        for server in servers.values():
            server.stop()

