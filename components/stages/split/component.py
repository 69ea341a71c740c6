"""KFP component: deterministic train/validation/test split of a dataset version."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented("Split a dataset version into train / validation / test by doc_id hash (deterministic)")
def split_op(
    store: str,
    dataset: str,
    version: str,
    split_config: dict,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
    counts: Output[Metrics],
):
    from components.common.logs import StepLog
    from components.stages.split.executor import split_version

    result = split_version(store, dataset, version, split_config,
                           {"train": train.path, "validation": validation.path, "test": test.path})
    for name, rows in result["rows"].items():
        counts.log_metric(f"{name}_rows", rows)
    StepLog("split")(f"split {dataset}@{result['version']}: " + ", ".join(f"{k} {v}" for k, v in result["rows"].items())
                     + " rows", dataset=dataset, version=result["version"], rows=result["rows"])
    for name, artifact in (("train", train), ("validation", validation), ("test", test)):
        artifact.metadata.update({"dataset": dataset, "version": result["version"], "split": result["split"],
                                  "part": name, "rows": result["rows"][name]})
