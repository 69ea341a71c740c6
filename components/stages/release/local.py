"""Local canary backend: stable and canary as real KServe model servers on loopback, labelled
rows replayed against them by weight, each server's own /metrics scraped every interval.

The analysis (components.stages.release.analysis) is the same code the cluster uses with Prometheus.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from typing import Any

from components.common.errors import NotFoundError
from components.stages.registry.store import PRODUCTION_ALIAS, resolve_version, set_alias, test_accuracy
from components.stages.release.analysis import CanaryState, RoleMetrics
from components.stages.release.artifacts import DeploymentRecord
from components.stages.release.config import CanaryConfig, RolloutConfig
from components.stages.release.experiment import assign_arm
from components.stages.release.gauges import publisher
from components.stages.release.records import experiment_result, store_record
from components.stages.release.rollout import ReplayTally, observers, run_rollout
from components.stages.release.strategies import Plan, begin
from components.stages.serve.infra import ServerProcess, http_json, new_client_auth
from components.stages.serve.security import ClientAuth


def scrape(url: str, model: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """Totals of our counters for `model` from a Prometheus text endpoint (None when unreachable)."""
    # lazy: only the metrics path needs it
    from prometheus_client.parser import text_string_to_metric_families

    try:
        # our own servers' http URLs (bandit B310)
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None
    totals: dict[str, Any] = {"requests": 0.0, "errors_5xx": 0.0, "buckets": {}, "predicted": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == "conveyor_requests_total":
                totals["requests"] += sample.value
                if sample.labels.get("code", "").startswith("5"):
                    totals["errors_5xx"] += sample.value
            elif sample.name == "conveyor_request_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                totals["buckets"][bound] = totals["buckets"].get(bound, 0.0) + sample.value
            elif sample.name == "conveyor_predictions_total":
                label = sample.labels["label"]
                totals["predicted"][label] = totals["predicted"].get(label, 0.0) + sample.value
    return totals


class LocalMetricsSource:
    """Per-interval deltas of each version's /metrics (what Prometheus' increase() would give)."""

    def __init__(self, urls: dict[str, str], model: str):
        self.urls, self.model = urls, model  # version -> that server's /metrics URL
        self.previous: dict[str, dict[str, Any]] = {}

    def take_problems(self) -> list[str]:
        return []  # a loopback server that does not answer is the interval's "no data", nothing more to say

    def snapshot(self, version: str) -> RoleMetrics:
        now = scrape(self.urls[version], self.model)
        if now is None:
            return RoleMetrics(reachable=False)
        before = self.previous.get(version, {"requests": 0.0, "errors_5xx": 0.0, "buckets": {}, "predicted": {}})
        self.previous[version] = now
        return RoleMetrics(
            requests=now["requests"] - before["requests"], errors_5xx=now["errors_5xx"] - before["errors_5xx"],
            latency_buckets={b: c - before["buckets"].get(b, 0.0) for b, c in now["buckets"].items()},
            predicted={k: v - before["predicted"].get(k, 0.0) for k, v in now["predicted"].items()})


class Replayer:
    """Sends labelled rows one request at a time, routed as the rollout's state says:
      canary     row goes to the candidate when its hash bucket is below the weight (a stable,
                 reproducible split); with a `split_url` (a route that splits by its own weights,
                 on a cluster) the row goes there unpinned and the route decides;
      bluegreen  every row to both: the active version answers it, the other (the preview before
                 the switch, the previous version after it) gets the same labelled request;
      shadow     every row to stable (its answer is the one returned) and a copy to the
                 candidate, whose answer is compared and discarded;
      ab         one arm per row, sticky by the row's key (`ab.key` in the request body, hashed
                 with the experiment's salt and `share()`, the split the route declares), and
                 each row at most once: an experiment's units must be independent, so replaying
                 the split twice would fake its sample size. Without a key, rows go unpinned to
                 `split_url` when there is one, else to an arm drawn at random here.
    `urls` and `headers` say how to reach each version: locally its own server; on a cluster the
    release route with the arm header that pins it. Every answer is counted under the version
    the predictor says answered it (`model_version`), not the one the request was meant for.
    Each interval sends enough that the candidate's share can reach min_requests and min_labelled
    (x1.5 margin)."""

    def __init__(self, texts: list[str], labels: list[str], urls: dict[str, str], stable: str, candidate: str,
                 cfg: CanaryConfig, per_interval: int = 60, rollout: RolloutConfig | None = None,
                 headers: dict[str, dict[str, str]] | None = None, split_url: str | None = None,
                 split_headers: dict[str, str] | None = None, share=None, timeout_s: float = 10,
                 auth: ClientAuth | None = None):
        self.texts, self.labels, self.urls = texts, labels, urls  # urls: version -> predict URL
        self.stable, self.candidate, self.cfg, self.per_interval = stable, candidate, cfg, per_interval
        self.rollout = rollout or RolloutConfig()
        self.headers = headers or {}
        self.split_url, self.split_headers = split_url, split_headers or {}
        self.share = share or (lambda: self.rollout.ab.split)
        self.timeout_s = timeout_s
        self.auth = auth  # the predictors' bearer token (and CA), sent with every row
        self.cursor = 0
        self.stable_failures = 0
        self.failures = 0  # requests not answered 200 (errors are the success-rate check's business)
        # reproducible traffic routing, not a secret (bandit B311)
        self.rng = random.Random(f"{stable}:{candidate}")  # nosec B311

    def _send(self, version: str | None, i: int, extra: dict | None = None) -> tuple[str | None, str | None]:
        """(the version that answered, its label); version None: unpinned, through split_url."""
        url = self.urls[version] if version is not None else self.split_url
        headers = self.headers.get(version, {}) if version is not None else self.split_headers
        try:
            code, body = http_json(url, {"instances": [self.texts[i]], **(extra or {})}, timeout=self.timeout_s,
                                   headers=headers, auth=self.auth)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            code, body = 599, {}
        if code == 200:
            return body.get("model_version", version), body["predictions"][0]["label"]
        self.failures += 1
        if version == self.stable:
            self.stable_failures += 1
        return None, None

    def _count(self, seen: dict[str, list[int]], version: str | None, i: int, label: str | None) -> None:
        if label is not None and version in seen:
            seen[version][0] += 1
            seen[version][1] += label == self.labels[i]

    def round(self, state: CanaryState) -> ReplayTally:
        ab = state.strategy == "ab"
        share = state.weight if state.strategy in ("canary", "ab") else 100
        needed = math.ceil(max(self.cfg.min_requests, self.cfg.min_labelled) * 100 / max(share, 1) * 1.5)
        seen = {self.stable: [0, 0], self.candidate: [0, 0]}
        tally = ReplayTally()
        for _ in range(max(self.per_interval, needed)):
            if ab and self.cursor >= len(self.texts):
                tally.exhausted = True
                break
            i = self.cursor % len(self.texts)
            self.cursor += 1
            if state.strategy in ("bluegreen", "shadow"):
                first, second = ((self.candidate, self.stable) if state.stage == "post_promotion"
                                 else (self.stable, self.candidate))
                answers = {}
                for version in (first, second):
                    answered, label = self._send(version, i)
                    self._count(seen, answered, i, label)
                    answers[version] = label
                if None not in answers.values():
                    tally.compared += 1
                    tally.agreed += answers[self.stable] == answers[self.candidate]
                continue
            extra = None
            if ab and self.rollout.ab.key:
                key = f"row-{i}"
                arm = assign_arm(key, self.share(), salt=f"{self.stable}:{self.candidate}", rng=self.rng)
                extra = {self.rollout.ab.key: key}
                target = self.candidate if arm == "candidate" else self.stable
            elif self.split_url is not None:
                target = None  # the route's weights decide
            elif ab:
                target = self.candidate if assign_arm(None, self.share(), salt="", rng=self.rng) == "candidate" \
                    else self.stable
            else:
                target = self.candidate if zlib.crc32(str(self.cursor).encode()) % 100 < state.weight else self.stable
            answered, label = self._send(target, i, extra)
            self._count(seen, answered, i, label)
        if ab and self.cursor >= len(self.texts):
            tally.exhausted = True
        tally.labelled = {v: (n, c) for v, (n, c) in seen.items()}
        return tally


class LocalRouter:
    """The traffic split is the replayer's routing; the state lives here, in memory."""

    def __init__(self, stable: str, candidate: str, plan: Plan, log=print):
        self._state, self._versions, self.log = begin(plan), (stable, candidate), log
        self.switched_at: float | None = None  # blue-green: when all traffic moved to the candidate

    def state(self) -> CanaryState:
        return self._state

    def versions(self) -> tuple[str, str]:
        return self._versions

    def apply(self, state: CanaryState, action: str, evidence: str) -> None:
        self._state = state
        if action == "switch":
            self.switched_at = time.monotonic()
        failed = [c["name"] for c in state.history[-1]["checks"] if c["passed"] is not True] if state.history else []
        stage = f" [{state.history[-1]['stage']}]" if state.history and "stage" in state.history[-1] else ""
        self.log(f"  weight {state.weight}%{stage}: {action}" + (f" (failed: {', '.join(failed)})" if failed else ""))


def run_local_canary(store, model_name: str, candidate: str, texts: list[str], labels: list[str],
                     cfg: CanaryConfig, requests_per_interval: int = 60, canary_chaos: list[str] | None = None,
                     canary_metrics_url: str | None = None, log=print,
                     rollout: RolloutConfig | None = None, env: str = "production",
                     on_step: Callable[[CanaryState], None] | None = None) -> DeploymentRecord:
    """Stable = the production version, candidate released by `rollout.strategy` (default canary).
    `on_step` sees the state after every interval (the audit log's release steps).
    Returns the deployment record (also stored)."""
    rollout = rollout or RolloutConfig()
    started = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {"model": model_name, "candidate": candidate, "env": env, "backend": "local",
                              "started_at": started.isoformat(),
                              "strategy": rollout.strategy, "config": cfg.model_dump(mode="json"),
                              "rollout": rollout.model_dump(mode="json")}
    try:
        stable_version = resolve_version(store, model_name, PRODUCTION_ALIAS)
    except NotFoundError:
        stable_version = None
    if stable_version is None or stable_version == candidate:
        # First deployment (or a re-run of the champion): nothing to compare against; it takes 100%.
        set_alias(store, model_name, PRODUCTION_ALIAS, candidate, reason="first deployment")
        record.update(stable=stable_version, outcome="Promoted", reason="first deployment: no stable to compare",
                      state=None)
        return store_record(store, record, log=log)

    record["stable"] = stable_version
    plan = Plan(cfg, rollout, baseline=test_accuracy(store, model_name, stable_version))
    auth = new_client_auth()  # both servers require it; the replay and warm-up send it
    with ServerProcess(f"{model_name}@{stable_version}", store.uri, name="stable", role="stable",
                       wait=False, auth=auth) as stable, \
            ServerProcess(f"{model_name}@{candidate}", store.uri, name="canary", role="canary",
                          extra=canary_chaos, wait=False, auth=auth) as canary:
        stable.wait_ready()
        canary.wait_ready()
        urls = {stable_version: f"{stable.url}/v1/models/stable:predict",
                candidate: f"{canary.url}/v1/models/canary:predict"}
        metrics = LocalMetricsSource({stable_version: f"{stable.url}/metrics",
                                      candidate: canary_metrics_url or f"{canary.url}/metrics"}, model_name)
        for url in urls.values():  # warm both up: a fresh process's first requests are not its latency
            for text in texts[:30]:
                http_json(url, {"instances": [text]}, timeout=10, auth=auth)
        metrics.snapshot(stable_version)
        metrics.snapshot(candidate)
        replay = Replayer(texts, labels, urls, stable_version, candidate, cfg, requests_per_interval, rollout,
                          auth=auth)
        router = LocalRouter(stable_version, candidate, plan, log)
        log(f"{rollout.strategy} {candidate} vs stable {stable_version}: starting at {router.state().weight}%"
            + (f" ({router.state().stage})" if router.state().stage else ""))
        # No wait between intervals: the replayed traffic is the interval.
        state = run_rollout(router, metrics, replay, plan, wait=lambda _s: None, log=log,
                            observe=observers(publisher(rollout.pushgateway_url, model_name, router.versions, log),
                                              on_step))
        record["stable_failed_requests"] = replay.stable_failures
        if state.phase == "Promoted" and router.switched_at is not None:
            # blue-green: the previous version stays up (instant rollback) until the delay has passed
            kept = rollout.bluegreen.scale_down_delay_s - (time.monotonic() - router.switched_at)
            if kept > 0:
                log(f"  keeping {stable_version} up {kept:.0f} s more (scale_down_delay_s)")
                time.sleep(kept)
            record["previous_scaled_down_after_s"] = round(time.monotonic() - router.switched_at, 1)
    record["state"] = state.to_json()
    record["outcome"] = str(state.phase)
    if state.phase == "Promoted":
        set_alias(store, model_name, PRODUCTION_ALIAS, candidate, reason=f"{rollout.strategy} promoted")
    if state.strategy == "ab" or rollout.strategy == "ab":
        record["experiment"] = experiment_result(candidate, stable_version, state, rollout)
    return store_record(store, record, state, log=log)
