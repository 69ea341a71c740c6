"""Labelled replay on the cluster: held-out rows sent to the InferenceService's own URL, so the
traffic split decides who answers; every response names its model version, which attributes each
answer to stable or canary. Gives the accuracy-vs-stable check real labelled traffic in both
KServe modes without reaching into revision- or canary-specific URLs."""

from __future__ import annotations

import urllib.error

from components.stages.release.rollout import ReplayTally
from components.stages.serve.infra import http_json
from components.stages.serve.security import ClientAuth


class LabelledReplay:
    def __init__(self, url: str, texts: list[str], labels: list[str], per_interval: int, timeout_s: float = 10,
                 auth: ClientAuth | None = None):
        if len(texts) != len(labels) or not texts:
            raise ValueError("labelled replay needs as many labels as texts, and at least one row")
        self.url, self.texts, self.labels = url, texts, labels
        self.per_interval, self.timeout_s = per_interval, timeout_s
        # the predictors' bearer token and CA (mounted from Secrets on the cluster); none: open
        self.auth = ClientAuth.from_env() if auth is None else auth
        self.cursor = 0
        self.failures = 0

    def round(self, state=None) -> ReplayTally:
        """Send one interval's rows; the tally says which version answered each and how many were
        right. `state` is unused: the InferenceService splits the traffic itself."""
        tally: dict[str, list[int]] = {}
        for _ in range(self.per_interval):
            i = self.cursor % len(self.texts)
            self.cursor += 1
            try:
                code, body = http_json(self.url, {"instances": [self.texts[i]]}, timeout=self.timeout_s,
                                       auth=self.auth)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                code, body = 599, {}
            version = body.get("model_version") if code == 200 else None
            if version is None:
                self.failures += 1  # errors are the success-rate check's business (from Prometheus)
                continue
            seen = tally.setdefault(version, [0, 0])
            seen[0] += 1
            seen[1] += body["predictions"][0]["label"] == self.labels[i]
        return ReplayTally(labelled={v: (n, c) for v, (n, c) in tally.items()})
