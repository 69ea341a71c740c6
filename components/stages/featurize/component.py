"""KFP component: fit the featurizer on train, encode all splits; the encoding is also published to
the store's feature cache, where the search trials and the train step read it. Binds parameters to
`components.stages.featurize.engines.run_featurize` (engine "spark" on a cluster: a SparkApplication)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented("Fit the featurizer on the training split and encode every split as token ids")
def featurize_op(
    store: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    test: Input[Dataset],
    features_config: dict,
    featurizer: Output[Artifact],
    train_features: Output[Dataset],
    validation_features: Output[Dataset],
    test_features: Output[Dataset],
    stats: Output[Metrics],
    engine: str = "local",  # spark: a SparkApplication on a cluster, the vocabulary fit in local[N] under kfp.local
    spark_config: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
    cluster_config: dict = {},  # noqa: B006
    run_id: str = "",
):
    from components.common.logs import StepLog
    from components.stages.featurize.engines import run_featurize

    result = run_featurize(
        store, {"train": train.path, "validation": validation.path, "test": test.path}, train.metadata,
        features_config, featurizer.path,
        {"train": train_features.path, "validation": validation_features.path, "test": test_features.path},
        engine=engine, engine_config={"spark": spark_config, "cluster": cluster_config}, run_id=run_id,
        log=StepLog("featurize", run_id),
    )
    for key, value in result.pop("stats").items():
        stats.log_metric(key, value)
    # What the encoding was made from, read by the steps that take these artifacts.
    for artifact in (featurizer, train_features, validation_features, test_features):
        artifact.metadata.update(result)
