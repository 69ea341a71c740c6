"""Staging on KServe: the pre-production environment's own InferenceService, verified the way
`staging.verify_local` verifies local model servers (components.stages.release.staging)."""

from __future__ import annotations

import json
from typing import Any

from components.stages.registry.store import test_accuracy
from components.stages.release.analysis import describe
from components.stages.release.artifacts import ReplayRows
from components.stages.release.config import CanaryConfig, EnvironmentConfig
from components.stages.release.staging import Verdict, production_version, staging_checks


def environment_target(deploy, env: EnvironmentConfig):
    """The DeployConfig of `env`'s InferenceService: production keeps deploy.name; another
    environment gets <deploy.name>-<env> unless it names its own; namespace likewise."""
    name = env.inference_service or (deploy.name if env.name == "production" else f"{deploy.name}-{env.name}")
    return deploy.model_copy(update={"name": name, "namespace": env.namespace or deploy.namespace})


def verify_cluster(store, deploy, cfg: CanaryConfig, env: EnvironmentConfig, model: str, candidate: str,
                   rows: ReplayRows, api=None, source=None, log=print,
                   wait=None) -> dict[str, Any]:
    """The same verification on KServe: `env`'s own InferenceService serves the candidate; every
    interval the labelled rows go to it and to production's InferenceService (each through its
    status.url), and Prometheus says what each version served (selected by version)."""
    # lazy: the cluster SDK and Prometheus are needed only on the cluster path
    import time

    # lazy: as above (the cluster SDK and Prometheus)
    from components.cluster.deploy import KubernetesInferenceServiceApi, apply_inference_service
    from components.cluster.isvc import build_inference_service
    from components.common.errors import ClusterError
    from components.stages.release.prometheus import PrometheusMetricsSource
    from components.stages.release.replay import LabelledReplay

    api = api or KubernetesInferenceServiceApi()
    target = environment_target(deploy, env)
    stable = production_version(store, model)
    if stable == candidate:
        return {"passed": True, "stable": stable, "reason": "already in production", "intervals": []}
    obj = apply_inference_service(api, build_inference_service(target, model, candidate, env=env.name),
                                  cfg.ready_timeout_s, log=log)
    urls = {candidate: (obj.get("status") or {}).get("url")}
    if stable is not None:
        production = environment_target(deploy, EnvironmentConfig(name="production"))
        live = api.get(production.name, production.namespace)
        urls[stable] = ((live or {}).get("status") or {}).get("url")
    missing = [v for v, u in urls.items() if not u]
    if missing:
        raise ClusterError(f"{env.name}: no status.url to replay labelled rows through for {', '.join(missing)}")
    per = max(cfg.cluster_replay_requests, cfg.min_requests, cfg.min_labelled)
    replays = {v: LabelledReplay(f"{u.rstrip('/')}/v1/models/{(target if v == candidate else production).name}"
                                 ":predict", *rows, per_interval=per) for v, u in urls.items()}
    source = source or PrometheusMetricsSource(cfg.prometheus, model, cfg.interval_s)
    wait = wait or time.sleep
    verdict, own_test = Verdict(env, cfg), test_accuracy(store, model, candidate)
    log(f"{env.name}: {candidate} serving on InferenceService {target.namespace}/{target.name}; verifying against "
        + (f"production {stable}" if stable else "its own test accuracy (no production model yet)"))
    while True:
        seen = {v: r.round().labelled.get(v, (0, 0)) for v, r in replays.items()}
        wait(cfg.interval_s)
        cand_m = source.snapshot(candidate)
        cand_m.labelled, cand_m.correct = seen[candidate]
        prod_m = None
        if stable is not None:
            prod_m = source.snapshot(stable)
            prod_m.labelled, prod_m.correct = seen[stable]
        checks = staging_checks(prod_m, cand_m, cfg, own_test)
        if prod_m is not None:  # separate requests, not mirrored copies: no agreement to compare
            checks = [c for c in checks if c.name != "agreement_with_stable"]
        done = verdict.add(checks)
        api.event(obj, "StagingAnalysis", f"interval {len(verdict.intervals)}: {describe(checks)}")
        if done is not None:
            return {"passed": done, "stable": stable, "reason": verdict.reason(done),
                    "checks": verdict.intervals[-1]["checks"], "intervals": verdict.intervals,
                    "inference_service": f"{target.namespace}/{target.name}",
                    "requests_failed": sum(r.failures for r in replays.values())}


def mark_awaiting(deploy, staging: EnvironmentConfig, request: dict[str, Any] | None, api=None) -> None:
    """The approval request as an annotation on the staging InferenceService (what `kubectl conveyor
    pending` lists), or its removal (request None) once a decision is recorded."""
    # lazy: the cluster SDK, only on the cluster path
    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster_approval import AWAITING

    api = api or KubernetesInferenceServiceApi()
    target = environment_target(deploy, staging)
    value = None if request is None else json.dumps(
        {k: request[k] for k in ("model", "version", "env", "requested_at", "expires_at")}, sort_keys=True)
    if api.get(target.name, target.namespace) is None:
        return  # no staging InferenceService (staged locally, or removed): nothing to mark
    api.patch(target.name, target.namespace, {"metadata": {"annotations": {AWAITING: value}}})
