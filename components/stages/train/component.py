"""KFP component: one training run through the shared entrypoint (the same code as every trial),
on the featurize step's artifacts when the chosen configuration kept their feature settings; as
torchrun processes in this pod when `train.world_size` is above 1, or as a Trainer TrainJob on the
cluster with `cluster.train_kind: TrainJob` (`components/stages/train/launch.py:train_step`)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.cluster.images import TRAINING_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=TRAINING_IMAGE, install_kfp_package=False)
@documented(
    "Train the best configuration (or keep the best trial's own model) and write its run record",
    run_id="Run id of this training run",
)
def train_op(
    store: str,
    featurizer: Input[Artifact],
    train_features: Input[Dataset],
    validation_features: Input[Dataset],
    test_features: Input[Dataset],
    config: dict,
    split_config: dict,
    features_config: dict,
    cluster_config: dict,
    best_params: dict,
    best_run_id: str,
    run_id: str,
    run_record: Output[Artifact],
    curve: Output[HTML],
    scalars: Output[Metrics],
):
    import json

    from components.cluster.images import TRAINING_IMAGE as image
    from components.common.config import merged_config
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.composition.config import config_from_dict
    from components.stages.featurize.executor import step_features
    from components.stages.train.config import TrainingConfig, apply_params
    from components.stages.train.launch import train_step
    from components.stages.train.plots import training_curve_html
    from components.tracking.runs import read_run

    run_config = config_from_dict(merged_config(config, split=split_config, features=features_config,
                                    cluster=cluster_config))
    cfg = apply_params(TrainingConfig.of(run_config), best_params)
    log = StepLog("train", run_id)
    dataset, version = featurizer.metadata["dataset"], featurizer.metadata["version"]
    if run_config.best_trial == "keep" and best_run_id:  # a retrain without a search has no trial to keep
        record = read_run(open_store(store), best_run_id)  # the best trial's own model, as trained
    else:
        def features():
            found = step_features(featurizer.metadata, cfg.split, cfg.features, featurizer.path, {
                "train": train_features.path, "validation": validation_features.path, "test": test_features.path})
            log("training on the featurize step's artifacts" if found else
                "the chosen feature settings differ from the featurize step's: encoding them here")
            return found

        # Several processes (torchrun here, or a TrainJob) read the same encoding from the feature cache.
        record = train_step(open_store(store), dataset, version, cfg, run_id, image, run_config.cluster,
                            features=features)
    with open(run_record.path, "w") as handle:
        json.dump(record, handle, indent=2)
    run_record.metadata.update({"run_id": record["run_id"], "run_key": record["run_key"]})
    with open(curve.path, "w") as handle:
        handle.write(training_curve_html(record["history"], f"training run {record['run_id']}", record["best_epoch"]))
    for split in ("validation", "test"):
        for name, value in record["metrics"].get(split, {}).items():
            scalars.log_metric(f"{split}_{name}", value)
    scalars.log_metric("best_epoch", record["best_epoch"])
    test = record["metrics"].get("test", {})
    log(f"run {record['run_id']}: test accuracy {test.get('accuracy', float('nan')):.4f}, best epoch "
        f"{record['best_epoch']}", trained_run=record["run_id"], metrics=record["metrics"])
    scalars.log_metric("train_docs_per_s", record["train_docs_per_s"])
