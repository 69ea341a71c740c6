"""KFP component: deterministic train/validation/test split of a dataset version."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
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
    from components.split.executor import split_version

    result = split_version(store, dataset, version, split_config,
                           {"train": train.path, "validation": validation.path, "test": test.path})
    for name, rows in result["rows"].items():
        counts.log_metric(f"{name}_rows", rows)
    for name, artifact in (("train", train), ("validation", validation), ("test", test)):
        artifact.metadata.update({"dataset": dataset, "version": result["version"], "split": result["split"],
                                  "part": name, "rows": result["rows"][name]})
