"""How a canary steps, what it checks and where the cluster analysis reads its metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.common.config import Section

# Prometheus query templates ($model, $version, $window are substituted; string.Template, since
# PromQL uses braces). Selecting by version works in both KServe modes: in Knative mode stable
# and canary are two revisions of one predictor and differ only in the model version they serve.
DEFAULT_QUERIES = {
    "requests": 'sum(increase(conveyor_requests_total{model="$model",version="$version"}[$window]))',
    "errors_5xx": 'sum(increase(conveyor_requests_total{model="$model",version="$version",code=~"5.."}[$window]))',
    "latency_buckets": 'sum by (le) (increase(conveyor_request_latency_seconds_bucket'
                       '{model="$model",version="$version"}[$window]))',
    "predicted": 'sum by (label) (increase(conveyor_predictions_total{model="$model",version="$version"}[$window]))',
}


class PrometheusConfig(Section):
    url: str = "http://prometheus-operated.monitoring.svc:9090"
    min_window_s: float = Field(60.0, gt=0)  # increase() needs >= 2 scrapes inside the window
    timeout_s: float = Field(10.0, gt=0)
    queries: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_QUERIES))

    @model_validator(mode="after")
    def _known(self) -> PrometheusConfig:
        unknown = set(self.queries) - set(DEFAULT_QUERIES)
        if unknown:
            raise ValueError(f"unknown queries {sorted(unknown)}; expected some of {sorted(DEFAULT_QUERIES)}")
        self.queries = {**DEFAULT_QUERIES, **self.queries}
        return self


class CanaryConfig(Section):
    step_weights: list[int] = Field(default_factory=lambda: [10, 25, 50])
    max_weight: int = Field(50, ge=1, le=100)
    interval_s: float = Field(10.0, gt=0)
    threshold: int = Field(2, ge=1)          # failed checks before rollback
    step_successes: int = Field(1, ge=1)     # consecutive passing intervals before the next step
    min_requests: int = Field(20, ge=1)      # fewer in an interval is "no data"
    min_success_rate: float = Field(0.99, ge=0, le=1)
    max_p99_latency_ms: float = Field(100.0, gt=0)
    max_latency_ratio: float = Field(3.0, gt=1)   # canary p99 / stable p99
    max_prediction_js: float = Field(0.2, ge=0, le=1)
    max_accuracy_drop: float = Field(0.05, ge=0, le=1)  # on labelled replay traffic, vs stable
    # fewer labelled answers per side in an interval: the accuracy check is skipped (too noisy to judge)
    min_labelled: int = Field(30, ge=1)
    # The accuracy check fails only when the drop is above max_accuracy_drop with this one-sided
    # confidence (Newcombe's score interval for a difference of proportions): a few dozen labelled
    # answers per side would otherwise roll back a healthy canary on sampling noise alone.
    accuracy_confidence: float = Field(0.95, ge=0.5, lt=1)
    no_data: Literal["fail", "inconclusive"] = "fail"
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)  # cluster analysis only
    # cluster: labelled held-out rows sent through the InferenceService URL each interval (0: none)
    cluster_replay_requests: int = Field(0, ge=0)
    ready_timeout_s: float = Field(600.0, gt=0)  # cluster: wait for KServe to reconcile each change

    @model_validator(mode="after")
    def _steps(self) -> CanaryConfig:
        if not self.step_weights or sorted(self.step_weights) != self.step_weights:
            raise ValueError("step_weights must be increasing")
        if any(not 0 < w <= 100 for w in self.step_weights) or self.step_weights[-1] > self.max_weight:
            raise ValueError(f"step_weights must lie in 1..max_weight ({self.max_weight})")
        return self


class BlueGreenConfig(Section):
    """Argo Rollouts' blue-green: the candidate is previewed at 0%, analysed, switched to 100% in
    one step, analysed again, and the previous version is kept for an instant rollback."""

    auto_promote: bool = True            # false: pause after pre-promotion analysis for `rollout promote`
    pre_promotion_intervals: int = Field(2, ge=1)   # passing intervals on the preview before the switch
    post_promotion_intervals: int = Field(2, ge=1)  # passing intervals at 100% before the old one goes
    scale_down_delay_s: float = Field(30.0, ge=0)   # the previous version stays up this long after the switch


class ABConfig(Section):
    """A fixed-split experiment decided by statistics (components.stages.release.experiment)."""

    split: float = Field(0.5, gt=0, lt=1)           # share of traffic (of keys) sent to the candidate
    # Sticky assignment: requests carrying this field (v1 JSON) or header are hashed into an arm;
    # requests without it are assigned at random. None: every request at random.
    key: str | None = "user_id"
    metric: Literal["accuracy"] = "accuracy"         # the outcome: labelled answers that were right
    mde: float = Field(0.05, gt=0, lt=1)             # minimum detectable effect (absolute)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    mixture_scale: float | None = Field(None, gt=0, lt=1)  # mSPRT prior scale tau (default: mde)
    baseline: float | None = Field(None, gt=0, lt=1)  # planning rate (default: the stable's test accuracy)
    on_no_difference: Literal["keep_stable", "promote"] = "keep_stable"


class ShadowConfig(Section):
    """The candidate answers a mirrored copy of every request; its answers are never returned."""

    intervals: int = Field(2, ge=1)                  # passing intervals before `then`
    min_agreement: float = Field(0.9, ge=0, le=1)    # share of mirrored requests where it agrees with stable
    then: Literal["canary", "promote"] = "canary"    # what a passing shadow turns into


class RouteConfig(Section):
    """A/B and shadow on KServe (Standard mode, Gateway API): the HTTPRoute of Conveyor's own
    (components/stages/release/route.py) and how the release step reaches it for labelled replay."""

    gateway: str = "kserve-ingress-gateway"        # the Gateway the route attaches to (KServe's default)
    gateway_namespace: str = "kserve"
    section_name: str | None = None                # one listener of that Gateway, if needed
    # Hostnames the route serves ({name} and {namespace}: the InferenceService's); clients of the
    # experiment use these, KServe's own hostnames keep going to the stable.
    hostnames: list[str] = Field(default_factory=lambda: ["{name}-release.{namespace}.example.com"], min_length=1)
    # The Gateway's address as the release step reaches it (e.g. its Service's cluster DNS name); the
    # labelled replay sends there with the route's first hostname as Host. Needed by ab and shadow.
    url: str | None = Field(None, pattern=r"^https?://.+")
    port: int = Field(80, ge=1, le=65535)          # the predictor Services' port
    arm_header: str = Field("x-conveyor-arm", pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
    mirror_percent: int = Field(100, ge=1, le=100)  # shadow: share of requests copied to the candidate


class RolloutConfig(Section):
    """Which release strategy the deploy step runs. Every strategy uses the canary section's
    checks (success rate, latency, prediction divergence, labelled accuracy), interval and
    threshold; these sections add what is particular to each."""

    strategy: Literal["canary", "bluegreen", "ab", "shadow"] = "canary"
    # after every analysis interval, the state as gauges (conveyor_rollout_*) for the dashboard
    pushgateway_url: str | None = Field(None, pattern=r"^https?://.+")
    bluegreen: BlueGreenConfig = Field(default_factory=BlueGreenConfig)
    ab: ABConfig = Field(default_factory=ABConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    route: RouteConfig = Field(default_factory=RouteConfig)  # ab and shadow on KServe


ENV_NAME = r"^[a-z][a-z0-9-]{0,30}$"
PRODUCTION = "production"


class EnvironmentConfig(Section):
    """One environment a blessed candidate passes through (config `environments`, in order).

    Every environment before the last is pre-production: the candidate is deployed there and
    verified on replayed labelled traffic with the canary's checks against the production model.
    The last is production, released by `rollout.strategy`. `approval` gates entering the
    environment: auto enters when the one before passed; manual waits for `conveyor approve`."""

    name: str = Field(pattern=ENV_NAME)   # also its registry alias and its `env` metrics label
    approval: Literal["auto", "manual"] = "auto"
    approval_ttl_hours: float = Field(72.0, gt=0)  # a request not decided by then expires
    # cluster: the environment's InferenceService (default: production uses deploy.name, every
    # other environment <deploy.name>-<env>) and namespace (default: deploy.namespace)
    inference_service: str | None = Field(None, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    verify_intervals: int = Field(2, ge=1)  # pre-production: passing analysis intervals in a row
    verify_max_intervals: int = Field(6, ge=1)  # ... out of at most this many

    @property
    def alias(self) -> str:
        return self.name


def default_environments() -> list[EnvironmentConfig]:
    return [EnvironmentConfig(name="staging"), EnvironmentConfig(name=PRODUCTION)]


def check_environments(envs: list[EnvironmentConfig]) -> list[EnvironmentConfig]:
    """The rules the release relies on: production last, names unique, a person only before production."""
    names = [e.name for e in envs]
    if not envs or names[-1] != PRODUCTION:
        raise ValueError(f"environments must end with {PRODUCTION!r} (got {names})")
    if len(set(names)) != len(names):
        raise ValueError(f"environment names must be unique (got {names})")
    manual = [e.name for e in envs[:-1] if e.approval == "manual"]
    if manual:
        raise ValueError(f"approval: manual is supported on {PRODUCTION!r} only (set on {manual}); "
                         "pre-production environments are entered automatically")
    if envs[0].name == PRODUCTION and len(envs) == 1:
        return envs  # no staging: the production release is the only verification (documented)
    for env in envs[:-1]:
        if env.verify_intervals > env.verify_max_intervals:
            raise ValueError(f"environment {env.name}: verify_intervals ({env.verify_intervals}) is above "
                             f"verify_max_intervals ({env.verify_max_intervals})")
    return envs
