"""KFP components of the release (the work: backends.py over executor.py). `stage_op`: a blessed
candidate through the pre-production environments, then entry to production granted or requested.
`release_op`: production by the configured strategy, refused unless staging passed and entry was
granted. Both on `target` local (model servers in the step) or kserve (InferenceServices)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


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
    # One plain output: kfp.local cannot resolve a condition on a named output inside another condition
    import json

    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.gate.artifacts import Blessing
    from components.stages.gate.core import verify_blessing
    from components.stages.release.backends import stage_on

    verify_blessing(Blessing.read(blessing.path), model_name, candidate)
    with open(test.path, "rb") as handle:
        test_split = handle.read()
    log = StepLog("stage")
    result = stage_on(target, open_store(store), model_name, candidate, test_split, canary_config, environments,
                      deploy_config, log=log)
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
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.release.backends import release_on

    log = StepLog("release")
    record = release_on(target, open_store(store), model_name, candidate, environment, environments, canary_config,
                        rollout_config, deploy_config, log=log)
    record.write(deployment.path)
    deployment.metadata.update({"outcome": record.outcome, "candidate": candidate, "env": environment,
                                "strategy": record.strategy})
    log(f"release of {model_name} {candidate} to {environment} ({record.strategy}): {record.outcome}",
        model=model_name, candidate=candidate, strategy=record.strategy, outcome=record.outcome)
    return record.outcome
