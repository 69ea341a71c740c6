"""Cluster metrics source: each role's interval metrics from Prometheus' HTTP API, with the query
templates from config (`canary.prometheus.queries`). Returns the same RoleMetrics the local
backend builds from /metrics deltas, so the analysis cannot tell the two apart."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from string import Template
from typing import Any

from components.common.errors import ConfigError
from components.stages.release.analysis import RoleMetrics
from components.stages.release.config import PrometheusConfig


class PrometheusUnavailable(Exception):
    pass


class PrometheusMetricsSource:
    def __init__(self, cfg: PrometheusConfig, model: str, interval_s: float):
        self.cfg, self.model = cfg, model
        self.window = f"{math.ceil(max(interval_s, cfg.min_window_s))}s"
        self.last_queries: list[str] = []
        self.errors: list[str] = []  # why a snapshot had no data, until take_problems

    def render(self, name: str, version: str) -> str:
        return Template(self.cfg.queries[name]).substitute(model=self.model, version=version, window=self.window)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.cfg.url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"canary.prometheus.url {self.cfg.url[:100]!r}: expected an http:// or https:// URL")
        self.last_queries.append(promql)
        try:
            # http(s) checked (bandit B310)
            with urllib.request.urlopen(url, timeout=self.cfg.timeout_s) as resp:  # nosec B310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400: a bad query template; 5xx: Prometheus trouble
            detail = exc.read().decode(errors="replace")[:300]
            raise PrometheusUnavailable(f"Prometheus answered {exc.code} to {promql!r}: {detail}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.cfg.url} unreachable: {exc}") from exc
        if body.get("status") != "success" or body.get("data", {}).get("resultType") != "vector":
            raise PrometheusUnavailable(f"unexpected Prometheus answer to {promql!r}: {str(body)[:300]}")
        return body["data"]["result"]

    def _scalar(self, name: str, version: str) -> float:
        result = self.query(self.render(name, version))
        return sum(_value(r) for r in result)

    def _by(self, name: str, version: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): _value(r) for r in self.query(self.render(name, version))}

    def take_problems(self) -> list[str]:
        taken, self.errors = self.errors, []
        return taken

    def snapshot(self, version: str) -> RoleMetrics:
        """What `version` served over the last window; unreachable Prometheus -> reachable=False."""
        try:
            buckets = {float(le): count for le, count in self._by("latency_buckets", version, "le").items()}
            return RoleMetrics(requests=self._scalar("requests", version),
                               errors_5xx=self._scalar("errors_5xx", version),
                               latency_buckets=buckets, predicted=self._by("predicted", version, "label"))
        except PrometheusUnavailable as exc:
            self.errors.append(str(exc))
            return RoleMetrics(reachable=False)


def _value(sample: dict[str, Any]) -> float:
    value = float(sample["value"][1])
    return 0.0 if math.isnan(value) else value
