"""KFP components of the release: `stage_op` takes a blessed candidate through the pre-production
environments (staging: deployed, verified on replayed labelled traffic against production,
recorded) and grants or requests entry to production; `release_op` releases into production by
the configured strategy (`rollout.strategy`: canary, bluegreen, ab or shadow) with automated
analysis and rollback, only when the version passed staging and entry was granted. Both run on
one of two backends:
  local   the versions as model servers inside the step, the test split replayed as labelled
          traffic, each server's /metrics read directly (what `conveyor run` uses);
  kserve  InferenceServices created or patched through the Kubernetes API (one per environment),
          real traffic measured through Prometheus, the rollout state kept on the production
          InferenceService (so `kubectl conveyor canary status|pause|promote|rollback NAME` steer it).
`stage_op` verifies the gate's blessing names this candidate and says BLESSED before anything is
deployed; the replayed rows are the split step's test split, kept in the store for the release.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import COMPONENT_IMAGE
from components.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Stage a blessed candidate: deploy it to each pre-production environment, verify it on replayed labelled "
    "traffic against production, record the verdict; then grant entry to production (approval: auto) or request "
    "a person's approval (manual)",
    ("Output",),
    Output="What follows staging: release (entry to production granted) | awaiting_approval (a person decides: "
           "`conveyor approve|reject`) | failed",
)
def stage_op(
    store: str,
    model_name: str,
    candidate: str,
    blessing: Input[Artifact],
    test: Input[Dataset],
    canary_config: dict,
    verification: Output[Artifact],
    environments: list = [],  # noqa: B006 ([]: staging, then production)
    target: str = "local",
    deploy_config: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
) -> str:
    # One plain output, not a NamedTuple: conditions on it resolve in kfp.local as on KFP (kfp.local
    # cannot resolve a condition on a named output of a task inside another condition)
    import json

    from components.common.errors import InputError
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.gate.core import verify_blessing
    from components.release.config import CanaryConfig, default_environments
    from components.release.executor import environments_from, keep_replay_rows, replay_rows, stage

    if target not in ("local", "kserve"):
        raise InputError(f"target must be 'local' or 'kserve', got {target!r}")
    with open(blessing.path) as handle:
        verify_blessing(json.load(handle), model_name, candidate)
    st = open_store(store)
    log = StepLog("stage")
    cfg = CanaryConfig.model_validate(canary_config)
    envs = environments_from(environments) if environments else default_environments()
    with open(test.path, "rb") as handle:
        keep_replay_rows(st, model_name, candidate, handle.read())
    rows = replay_rows(st, model_name, candidate)

    if target == "kserve":
        from components.deploy.config import DeployConfig
        from components.release.cluster_staging import verify_cluster

        deploy = DeployConfig.model_validate(deploy_config)
        if store.startswith("s3://"):  # the predictor reads models from the same registry
            deploy = deploy.model_copy(update={"store": store})

        def verify(env):
            return verify_cluster(st, deploy, cfg, env, model_name, candidate, rows, log=log)
    else:
        from components.release.staging import verify_local

        def verify(env):
            return verify_local(st, model_name, candidate, *rows, cfg, env, log=log)

    result = stage(st, model_name, candidate, envs, verify, log=log)
    if target == "kserve" and result["next"] == "awaiting_approval":
        from components.release.cluster_staging import mark_awaiting
        from components.release.environments import request

        mark_awaiting(deploy, envs[-2], request(st, model_name, candidate, envs[-1].name))
    with open(verification.path, "w") as handle:
        json.dump({"model": model_name, "candidate": candidate, **result}, handle, indent=2)
    verification.metadata.update({"next": result["next"], "candidate": candidate})
    log(f"staging of {model_name} {candidate}: {result['next']}", model=model_name, candidate=candidate,
        next=result["next"])
    return result["next"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Release a staged, approved candidate into production by the configured strategy (canary, blue-green, A/B or "
    "shadow) with automated analysis; promote or roll back. Refused unless it passed staging and entry was granted",
    ("Output",),
    Output="How the release ended: Promoted | RolledBack | Paused (the registry's production alias moves on Promoted)",
)
def release_op(
    store: str,
    model_name: str,
    candidate: str,
    canary_config: dict,
    deployment: Output[Artifact],
    environment: str = "production",
    environments: list = [],  # noqa: B006 ([]: staging, then production)
    target: str = "local",
    deploy_config: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
    rollout_config: dict = {},  # noqa: B006 ({}: canary)
) -> str:
    import json

    from components.common.errors import InputError
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.release.config import CanaryConfig, RolloutConfig, default_environments
    from components.release.executor import environments_from, release

    if target not in ("local", "kserve"):
        raise InputError(f"target must be 'local' or 'kserve', got {target!r}")
    st = open_store(store)
    log = StepLog("release")
    cfg = CanaryConfig.model_validate(canary_config)
    rollout = RolloutConfig.model_validate(rollout_config)
    envs = environments_from(environments) if environments else default_environments()
    if target == "kserve":
        from components.deploy.config import DeployConfig
        from components.release.cluster import run_cluster_rollout

        deploy = DeployConfig.model_validate(deploy_config)
        if store.startswith("s3://"):  # the predictor reads models from the same registry
            deploy = deploy.model_copy(update={"store": store})

        def deliver(texts, labels, on_step):
            return run_cluster_rollout(st, deploy, cfg, model_name, candidate, rollout=rollout, log=log,
                                       replay_rows=(texts, labels) if cfg.cluster_replay_requests else None,
                                       on_step=on_step)
    else:
        from components.release.local import run_local_canary

        def deliver(texts, labels, on_step):
            return run_local_canary(st, model_name, candidate, texts, labels, cfg, rollout=rollout, log=log,
                                    env=environment, on_step=on_step)

    record = release(st, model_name, candidate, environment, envs, rollout.strategy, deliver, target=target)
    with open(deployment.path, "w") as handle:
        json.dump(record, handle, indent=2)
    deployment.metadata.update({"outcome": record["outcome"], "candidate": candidate, "strategy": rollout.strategy,
                                "env": environment})
    log(f"release of {model_name} {candidate} to {environment} ({rollout.strategy}): {record['outcome']}",
        model=model_name, candidate=candidate, strategy=rollout.strategy, outcome=record["outcome"])
    return record["outcome"]
