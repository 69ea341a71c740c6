"""The release steps on one of two backends, chosen by `target` (what `stage_op` and `release_op`
run): local model servers on loopback, or KServe InferenceServices through the Kubernetes API.
The decisions (what passes staging, who may enter production) are executor.py's; this module only
binds them to a backend, as components.stages.search.backends does for the search."""

from __future__ import annotations

from typing import Any

from components.cluster.deploy_config import DeployConfig
from components.common.errors import InputError
from components.common.storage import Store
from components.stages.release.artifacts import DeploymentRecord, ReplayRows
from components.stages.release.config import CanaryConfig, EnvironmentConfig, RolloutConfig, default_environments
from components.stages.release.executor import environments_from, keep_replay_rows, release, replay_rows, stage

TARGETS = ("local", "kserve")


def _checked(target: str) -> None:
    if target not in TARGETS:
        raise InputError(f"target must be 'local' or 'kserve', got {target!r}")


def _deploy(store: Store, deploy_config: dict) -> DeployConfig:
    deploy = DeployConfig.model_validate(deploy_config)
    if store.uri.startswith("s3://"):  # the predictor reads models from the same registry
        deploy = deploy.model_copy(update={"store": store.uri})
    return deploy


def _environments(raw: list) -> list[EnvironmentConfig]:
    return environments_from(raw) if raw else default_environments()


def stage_on(target: str, store: Store, model: str, candidate: str, test_split: bytes, canary_config: dict,
             environments: list, deploy_config: dict, log=print) -> dict[str, Any]:
    _checked(target)
    cfg, envs = CanaryConfig.model_validate(canary_config), _environments(environments)
    keep_replay_rows(store, model, candidate, test_split)
    rows = replay_rows(store, model, candidate)
    if target == "kserve":
        # lazy: the cluster SDK, only on the cluster path
        from components.stages.release.cluster_staging import mark_awaiting, verify_cluster
        from components.stages.release.environments import request

        deploy = _deploy(store, deploy_config)
        result = stage(store, model, candidate, envs,
                       lambda env: verify_cluster(store, deploy, cfg, env, model, candidate, rows, log=log), log=log)
        if result["next"] == "awaiting_approval":
            mark_awaiting(deploy, envs[-2], request(store, model, candidate, envs[-1].name))
        return result
    # lazy: model-server processes, only on the local path
    from components.stages.release.staging import verify_local

    return stage(store, model, candidate, envs,
                 lambda env: verify_local(store, model, candidate, *rows, cfg, env, log=log), log=log)


def release_on(target: str, store: Store, model: str, candidate: str, environment: str, environments: list,
               canary_config: dict, rollout_config: dict, deploy_config: dict, log=print) -> DeploymentRecord:
    _checked(target)
    cfg, envs = CanaryConfig.model_validate(canary_config), _environments(environments)
    rollout = RolloutConfig.model_validate(rollout_config)
    if target == "kserve":
        # lazy: the cluster SDK, only on the cluster path
        from components.stages.release.cluster import run_cluster_rollout

        deploy = _deploy(store, deploy_config)

        def deliver(texts, labels, on_step):
            return run_cluster_rollout(store, deploy, cfg, model, candidate, rollout=rollout, log=log,
                                       replay_rows=ReplayRows(texts, labels) if cfg.cluster_replay_requests else None,
                                       on_step=on_step)
    else:
        # lazy: model-server processes, only on the local path
        from components.stages.release.local import run_local_canary

        def deliver(texts, labels, on_step):
            return run_local_canary(store, model, candidate, texts, labels, cfg, rollout=rollout, log=log,
                                    env=environment, on_step=on_step)

    return release(store, model, candidate, environment, envs, rollout.strategy, deliver, target=target)
