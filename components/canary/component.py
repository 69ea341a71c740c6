"""KFP component: canary rollout of a blessed candidate against the champion, with automated
analysis and rollback. This runs the local backend: both versions as model servers inside the
step, the test split replayed as labelled traffic. (The KServe InferenceService backend is not
built yet; see README.)"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def canary_op(
    store: str,
    model_name: str,
    candidate: str,
    dataset: str,
    version: str,
    split_config: dict,
    canary_config: dict,
    deployment: Output[Artifact],
) -> NamedTuple("CanaryOutputs", outcome=str, champion=str):
    import json
    from collections import namedtuple

    from components.canary.analysis import CanaryConfig
    from components.canary.local import run_local_canary
    from components.common.config import SplitConfig
    from components.common.storage import open_store
    from components.dataset import versioning as v
    from components.registry.core import resolve_version
    from components.split.core import split_table

    st = open_store(store)
    rows = split_table(v.read_table(st, v.resolve(st, dataset, version), columns=["doc_id", "text", "label"]),
                       SplitConfig.model_validate(split_config))["test"]
    record = run_local_canary(st, model_name, candidate, rows.column("text").to_pylist(),
                              rows.column("label").to_pylist(), CanaryConfig.model_validate(canary_config))
    with open(deployment.path, "w") as handle:
        json.dump(record, handle, indent=2)
    deployment.metadata.update({"outcome": record["outcome"], "candidate": candidate})
    outputs = namedtuple("CanaryOutputs", ["outcome", "champion"])
    return outputs(record["outcome"], resolve_version(st, model_name, "champion"))
