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
    from components.split.core import split_version

    rows = split_version(store, dataset, version, split_config,
                         {"train": train.path, "validation": validation.path, "test": test.path})
    for key, value in rows.items():
        counts.log_metric(key, value)
    for artifact in (train, validation, test):
        artifact.metadata.update({"dataset": dataset, "version": version})
