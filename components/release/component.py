"""KFP component: release of a blessed candidate against the champion by the configured strategy
(`rollout.strategy`: canary, bluegreen, ab or shadow), with automated analysis and rollback, on
one of two backends:
  local   both versions as model servers inside the step, the test split replayed as labelled
          traffic, each server's /metrics read directly (what `conveyor run` uses);
  kserve  the InferenceService is created or patched through the Kubernetes API, real traffic is
          measured through Prometheus, and the rollout state is kept on the InferenceService
          (so `kubectl conveyor canary status|pause|promote|rollback NAME` steer it meanwhile).
It takes the gate's blessing and verifies it names this candidate and says BLESSED before any
traffic moves; the replayed rows are the split step's test split.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import COMPONENT_IMAGE
from components.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Release a blessed candidate against the champion (canary, blue-green, A/B or shadow) with automated analysis; "
    "promote or roll back",
    ("outcome", "champion"),
)
def release_op(
    store: str,
    model_name: str,
    candidate: str,
    blessing: Input[Artifact],
    test: Input[Dataset],
    canary_config: dict,
    deployment: Output[Artifact],
    target: str = "local",
    deploy_config: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
    rollout_config: dict = {},  # noqa: B006 ({}: canary)
) -> NamedTuple("ReleaseOutputs", outcome=str, champion=str):
    import json
    from collections import namedtuple

    from components.common.errors import InputError
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.evaluate.executor import read_test_split
    from components.gate.core import verify_blessing
    from components.registry.store import resolve_version
    from components.release.config import CanaryConfig, RolloutConfig

    if target not in ("local", "kserve"):
        raise InputError(f"target must be 'local' or 'kserve', got {target!r}")
    with open(blessing.path) as handle:
        verify_blessing(json.load(handle), model_name, candidate)
    st = open_store(store)
    log = StepLog("release")
    cfg = CanaryConfig.model_validate(canary_config)
    rollout = RolloutConfig.model_validate(rollout_config)

    def test_rows() -> tuple[list, list]:
        rows = read_test_split(test.path)
        return rows.column("text").to_pylist(), rows.column("label").to_pylist()

    if target == "kserve":
        from components.deploy.config import DeployConfig
        from components.release.cluster import run_cluster_rollout

        deploy = DeployConfig.model_validate(deploy_config)
        if store.startswith("s3://"):  # the predictor reads models from the same registry
            deploy = deploy.model_copy(update={"store": store})
        record = run_cluster_rollout(st, deploy, cfg, model_name, candidate,
                                     replay_rows=test_rows() if cfg.cluster_replay_requests else None,
                                     rollout=rollout, log=log)
    else:
        from components.release.local import run_local_canary

        record = run_local_canary(st, model_name, candidate, *test_rows(), cfg, rollout=rollout, log=log)
    with open(deployment.path, "w") as handle:
        json.dump(record, handle, indent=2)
    deployment.metadata.update({"outcome": record["outcome"], "candidate": candidate, "strategy": rollout.strategy})
    log(f"release of {model_name} {candidate} ({rollout.strategy}): {record['outcome']}", model=model_name,
        candidate=candidate, strategy=rollout.strategy, outcome=record["outcome"])
    outputs = namedtuple("ReleaseOutputs", ["outcome", "champion"])
    return outputs(record["outcome"], resolve_version(st, model_name, "champion"))
