"""KFP component: fit the featurizer on train, encode all splits."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def featurize_op(
    train: Input[Dataset],
    validation: Input[Dataset],
    test: Input[Dataset],
    features_config: dict,
    featurizer: Output[Artifact],
    train_features: Output[Dataset],
    validation_features: Output[Dataset],
    test_features: Output[Dataset],
    stats: Output[Metrics],
):
    from components.featurize.core import featurize_files

    fitted_on = {"dataset": train.metadata.get("dataset"), "version": train.metadata.get("version")}
    result = featurize_files(
        {"train": train.path, "validation": validation.path, "test": test.path}, features_config,
        featurizer.path,
        {"train": train_features.path, "validation": validation_features.path, "test": test_features.path},
        fitted_on=fitted_on,
    )
    for key, value in result.items():
        stats.log_metric(key, value)
    featurizer.metadata.update(fitted_on)
