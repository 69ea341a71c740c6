"""Local canary backend: stable and canary as real KServe model servers on loopback, labelled
rows replayed against them by weight, each server's own /metrics scraped every interval.

The analysis (components.canary.analysis) is the same code the cluster uses with Prometheus.
"""

from __future__ import annotations

import datetime as dt
import math
import urllib.error
import urllib.request
import zlib
from typing import Any

from components.canary.analysis import CanaryState, RoleMetrics, start
from components.canary.config import CanaryConfig
from components.canary.rollout import run_rollout
from components.common.errors import NotFoundError
from components.common.layout import deployment_record_key
from components.registry.store import resolve_version, set_alias
from components.serve.infra import ServerProcess, http_json


def scrape(url: str, model: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """Totals of our counters for `model` from a Prometheus text endpoint (None when unreachable)."""
    # lazy: only the metrics path needs it
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
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
    """Sends labelled rows one request at a time: row i goes to the canary when its hash bucket is
    below the current weight (a stable, reproducible traffic split). Each interval sends enough
    that the canary's share can reach min_requests and min_labelled (x1.5 margin)."""

    def __init__(self, texts: list[str], labels: list[str], urls: dict[str, str], stable: str, candidate: str,
                 cfg: CanaryConfig, per_interval: int = 60):
        self.texts, self.labels, self.urls = texts, labels, urls  # urls: version -> predict URL
        self.stable, self.candidate, self.cfg, self.per_interval = stable, candidate, cfg, per_interval
        self.cursor = 0
        self.stable_failures = 0

    def round(self, weight: int) -> dict[str, tuple[int, int]]:
        needed = math.ceil(max(self.cfg.min_requests, self.cfg.min_labelled) * 100 / max(weight, 1) * 1.5)
        seen = {self.stable: [0, 0], self.candidate: [0, 0]}
        for _ in range(max(self.per_interval, needed)):
            i = self.cursor % len(self.texts)
            self.cursor += 1
            version = self.candidate if zlib.crc32(str(self.cursor).encode()) % 100 < weight else self.stable
            try:
                code, body = http_json(self.urls[version], {"instances": [self.texts[i]]}, timeout=10)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                code, body = 599, {}
            if code == 200:
                seen[version][0] += 1
                seen[version][1] += body["predictions"][0]["label"] == self.labels[i]
            elif version == self.stable:
                self.stable_failures += 1
        return {v: (n, c) for v, (n, c) in seen.items()}


class LocalRouter:
    """The traffic split is the replayer's weight; the state lives here, in memory."""

    def __init__(self, stable: str, candidate: str, cfg: CanaryConfig, log=print):
        self._state, self._versions, self.log = start(cfg), (stable, candidate), log

    def state(self) -> CanaryState:
        return self._state

    def versions(self) -> tuple[str, str]:
        return self._versions

    def apply(self, state: CanaryState, action: str, evidence: str) -> None:
        self._state = state
        failed = [c["name"] for c in state.history[-1]["checks"] if c["passed"] is not True] if state.history else []
        self.log(f"  weight {state.weight}%: {action}" + (f" (failed: {', '.join(failed)})" if failed else ""))


def run_local_canary(store, model_name: str, candidate: str, texts: list[str], labels: list[str],
                     cfg: CanaryConfig, requests_per_interval: int = 60, canary_chaos: list[str] | None = None,
                     canary_metrics_url: str | None = None, log=print) -> dict[str, Any]:
    """Stable = current champion, canary = candidate. Returns the deployment record (also stored)."""
    started = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {"model": model_name, "candidate": candidate, "started_at": started.isoformat(),
                              "config": cfg.model_dump(mode="json")}
    try:
        stable_version = resolve_version(store, model_name, "champion")
    except NotFoundError:
        stable_version = None
    if stable_version is None or stable_version == candidate:
        # First deployment (or a re-run of the champion): nothing to compare against; it takes 100%.
        set_alias(store, model_name, "champion", candidate)
        record.update(stable=stable_version, outcome="Promoted", reason="first deployment: no stable to compare",
                      state=None)
        return _save(store, record, log)

    record["stable"] = stable_version
    with ServerProcess(f"{model_name}@{stable_version}", store.uri, name="stable", role="stable",
                       wait=False) as stable, \
            ServerProcess(f"{model_name}@{candidate}", store.uri, name="canary", role="canary",
                          extra=canary_chaos, wait=False) as canary:
        stable.wait_ready()
        canary.wait_ready()
        urls = {stable_version: f"{stable.url}/v1/models/stable:predict",
                candidate: f"{canary.url}/v1/models/canary:predict"}
        metrics = LocalMetricsSource({stable_version: f"{stable.url}/metrics",
                                      candidate: canary_metrics_url or f"{canary.url}/metrics"}, model_name)
        for url in urls.values():  # warm both up: a fresh process's first requests are not its latency
            for text in texts[:30]:
                http_json(url, {"instances": [text]}, timeout=10)
        metrics.snapshot(stable_version)
        metrics.snapshot(candidate)
        replay = Replayer(texts, labels, urls, stable_version, candidate, cfg, requests_per_interval)
        router = LocalRouter(stable_version, candidate, cfg, log)
        log(f"canary {candidate} vs stable {stable_version}: starting at {router.state().weight}%")
        # No wait between intervals: the replayed traffic is the interval.
        state = run_rollout(router, metrics, replay, cfg, wait=lambda _s: None, log=log)
        record["stable_failed_requests"] = replay.stable_failures
    record["state"] = state.to_json()
    record["outcome"] = state.phase
    if state.phase == "Promoted":
        set_alias(store, model_name, "champion", candidate)
    return _save(store, record, log)


def _save(store, record: dict[str, Any], log) -> dict[str, Any]:
    record["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    key = deployment_record_key(record["model"], record["finished_at"], record["candidate"])
    store.write_json(key, record)
    record["record_uri"] = store.url(key)
    log(f"canary outcome: {record['outcome']} (record {record['record_uri']})")
    return record
