"""The training pipeline: data steps -> search (Katib | Optuna) -> train the best -> register.

On the cluster the `train` task asks for a GPU (accelerator type/limit, GPU node selector and
toleration from the config); the search runs its trials as Katib GPU Jobs. kfp.local ignores
the accelerator settings, so the same pipeline runs on a laptop.
"""

from kfp import dsl, kubernetes

from components.composition.config import ConveyorConfig, run_config
from components.composition.parameters import documented
from components.stages.evaluate.component import evaluate_op
from components.stages.gate.component import gate_op
from components.stages.notify.component import exit_notify_op, notify_op
from components.stages.registry.component import register_op
from components.stages.release.component import release_op, stage_op
from components.stages.search.component import tune_op
from components.stages.train.component import train_op
from pipelines.data_pipeline import CLUSTER_STORE, audited, data_steps, grant_store_access, section_defaults


def _alerting(cfg: ConveyorConfig):
    def alert(task, name: str):
        task.set_display_name(name)
        task.set_caching_options(False)  # a notification is a side effect
        # the webhook URL lives in a Secret, never in the compiled pipeline; optional: no Secret, no webhook
        kubernetes.use_secret_as_env(task, secret_name=cfg.notify.secret,
                                     secret_key_to_env={"url": "CONVEYOR_NOTIFY_URL"}, optional=True)
        return task
    return alert


def production_release(cfg: ConveyorConfig, alert, run_id, notify_config, **release_inputs):
    """The production release step and its "not promoted" alert: the training pipeline's branch
    after staging granted entry, and the whole of the conveyor-release pipeline."""
    rollout = release_op(**release_inputs)
    audited(rollout).set_display_name(f"production release ({cfg.rollout.strategy}): analysis, promote or roll back")
    rollout.set_caching_options(False)
    with dsl.If(rollout.outputs["Output"] != "Promoted", name="not-promoted"):
        alert(notify_op(event="rolled_back", run_id=run_id, model_name=release_inputs["model_name"],
                        notify_config=notify_config, record=rollout.outputs["deployment"]),
              "alert: release not promoted")
    return rollout


def build_training_pipeline(cfg: ConveyorConfig, store: str = CLUSTER_STORE, backend: str = "katib",
                            continuous: bool = False):
    """continuous=True: the continuous-training pipeline the retraining trigger submits. New data
    is ingested as a child of the latest version, and (with monitor.retrain: champion_params) the
    champion's configuration is retrained without a search; the gate and canary are the same."""
    search = not continuous or cfg.monitor.retrain == "search"
    if not search:
        cfg = cfg.model_copy(update={"best_trial": "retrain"})
    config = cfg.model_dump(mode="json", exclude_none=True)
    own_config = run_config(config)
    alert = _alerting(cfg)
    sections = section_defaults(cfg, "production" if continuous else "reference")
    name, description = _name_and_description(continuous, search)

    @dsl.pipeline(name=name, description=description)
    @documented(description)
    def training_pipeline(
        sources: list = list(cfg.data.production if continuous else cfg.data.reference),  # noqa: B006
        dataset: str = cfg.data.dataset,
        store: str = store,
        search_backend: str = backend,
        model_name: str = cfg.model_name,
        config: dict = own_config,
        source_settings: dict = sections["source_settings"],
        cleaning: dict = sections["cleaning"],
        split_config: dict = sections["split_config"],
        features_config: dict = sections["features_config"],
        report_config: dict = sections["report_config"],
        evaluate_config: dict = config["evaluate"],
        gate_config: dict = config["gate"],
        canary_config: dict = config["canary"],
        rollout_config: dict = config["rollout"],  # strategy: canary | bluegreen | ab | shadow
        environments: list = config["environments"],  # staging, then production (approval auto | manual)
        deploy_target: str = "kserve" if backend == "katib" else "local",
        deploy_config: dict = config["deploy"],
        reference_version: str = "",  # the data report's drift baseline ("": statistics only)
        engine: str = sections["engine"],  # ingest: local | spark (a SparkApplication on the cluster)
        spark_config: dict = sections["spark_config"],
        cluster_config: dict = sections["cluster_config"],  # where trials and training run (GPUs, nodes)
        notify_config: dict = config["notify"],  # Alert & Stop webhook (the URL from the Secret on a cluster)
        ingest_workers: int = sections["ingest_workers"],  # engine=local: processes (0: the pod's cores)
    ):
        # No pipeline output: KFP allows none from inside an ExitHandler; the registered version is
        # the register task's output (and the registry's `candidate` alias).
        run_id = f"{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        failed = exit_notify_op(run_id=run_id, model_name=model_name, notify_config=notify_config)
        alert(failed, "alert on failure")
        with dsl.ExitHandler(failed, name="steps"):
            data = data_steps(sources, dataset, store, source_settings, cleaning, split_config, features_config,
                              report_config, reference_version=reference_version, engine=engine,
                              spark_config=spark_config, cluster_config=cluster_config, workers=ingest_workers)
            features = {name: data.features.outputs[name]
                        for name in ("featurizer", "train_features", "validation_features", "test_features")}
            test_split = data.splits.outputs["test"]
            trained = _search_and_train(cfg, search, features, store=store, search_backend=search_backend,
                                        config=config, split_config=split_config, features_config=features_config,
                                        cluster_config=cluster_config, run_id=run_id)
            registered, gated = _register_evaluate_gate(trained, test_split, store=store, model_name=model_name,
                                                        evaluate_config=evaluate_config, gate_config=gate_config)
            with dsl.If(gated.outputs["Output"] == False, name="not-blessed"):  # noqa: E712 (a KFP condition)
                alert(notify_op(event="not_blessed", run_id=run_id, model_name=model_name,
                                notify_config=notify_config, record=gated.outputs["blessing"]),
                      "alert & stop: candidate not blessed")
            with dsl.If(gated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a KFP condition, not Python)
                _stage_and_release(cfg, alert, run_id, notify_config, store=store, model_name=model_name,
                                   candidate=registered.outputs["version"], blessing=gated.outputs["blessing"],
                                   test=test_split, canary_config=canary_config, environments=environments,
                                   target=deploy_target, deploy_config=deploy_config, rollout_config=rollout_config)
        grant_store_access(cfg)

    return training_pipeline


def _name_and_description(continuous: bool, search: bool) -> tuple[str, str]:
    if not continuous:
        return "conveyor-training", ("Ingest and version the data, search hyperparameters (Katib on GPU nodes, or "
                                     "Optuna locally), train the best configuration, register, evaluate, gate, canary.")
    return "conveyor-continuous-training", (
        "Retraining on new data (submitted by the monitoring trigger): ingest the new batch as a child version, "
        + ("search and train" if search else "retrain the champion's configuration")
        + ", register, evaluate vs the champion, gate, canary.")


def _register_evaluate_gate(trained, test_split, *, store, model_name, evaluate_config, gate_config):
    """Inside the pipeline: the trained run registered (alias: candidate), evaluated against the
    champion on the test split, and gated (never cached: the champion may have moved)."""
    registered = register_op(store=store, model_name=model_name, run_record=trained.outputs["run_record"])
    audited(registered).set_display_name("register model (alias: candidate)")
    evaluated = evaluate_op(store=store, model_name=model_name, candidate=registered.outputs["version"],
                            test=test_split, evaluate_config=evaluate_config)
    evaluated.set_display_name("evaluate candidate vs champion")
    gated = gate_op(store=store, model_name=model_name, evaluation=evaluated.outputs["evaluation"],
                    test=test_split, gate_config=gate_config)
    audited(gated).set_display_name("gate (thresholds, regressions, infra validation)")
    gated.set_caching_options(False)
    return registered, gated


def _search_and_train(cfg: ConveyorConfig, search: bool, features: dict, *, store, search_backend, config,
                      split_config, features_config, cluster_config, run_id):
    """Inside the pipeline: the search and the training of its best configuration, or (search=False)
    the champion's configuration retrained; the training placed on GPU nodes as `cluster` says."""
    cluster = cfg.cluster
    tasks = []
    if search:
        tuned = tune_op(backend=search_backend, store=store, featurizer=features["featurizer"], config=config,
                        split_config=split_config, features_config=features_config,
                        cluster_config=cluster_config, run_id=run_id)
        tuned.set_caching_options(False)  # launches (and may adopt) a Katib experiment: a side effect
        tuned.set_display_name("search (Katib / Optuna)")
        tasks.append(tuned)
        trained = train_op(store=store, **features, config=config, split_config=split_config,
                           features_config=features_config, cluster_config=cluster_config,
                           best_params=tuned.outputs["best_params"],
                           best_run_id=tuned.outputs["best_run_id"], run_id=f"{run_id}-best")
        trained.set_display_name("train best configuration")
    else:
        trained = train_op(store=store, **features, config=config, split_config=split_config,
                           features_config=features_config, cluster_config=cluster_config, best_params={},
                           best_run_id="", run_id=f"{run_id}-retrain")
        trained.set_display_name("retrain the champion's configuration")
    tasks.append(trained)
    if cluster.gpus_per_trial:
        trained.set_accelerator_type(cluster.gpu_resource).set_accelerator_limit(cluster.gpus_per_trial)
        for key, value in cluster.node_selector.items():
            kubernetes.add_node_selector(trained, label_key=key, label_value=value)
        for tol in cluster.tolerations:
            kubernetes.add_toleration(trained, key=tol.get("key"), operator=tol.get("operator"),
                                      value=tol.get("value"), effect=tol.get("effect"))
    for task in tasks:
        audited(task)
    return trained


def _stage_and_release(cfg: ConveyorConfig, alert, run_id, notify_config, *, store, model_name, candidate, blessing,
                       test, canary_config, environments, target, deploy_config, rollout_config) -> None:
    """Inside the pipeline, for a blessed candidate: staging (deploy, verify, approval), then an alert
    and stop on failure or while awaiting approval, or the production release once entry is granted."""
    staged = stage_op(store=store, model_name=model_name, candidate=candidate, blessing=blessing, test=test,
                      canary_config=canary_config, environments=environments, target=target,
                      deploy_config=deploy_config)
    audited(staged).set_display_name("staging: deploy, verify on replayed traffic, approval")
    staged.set_caching_options(False)
    with dsl.If(staged.outputs["Output"] == "failed", name="staging-failed"):
        alert(notify_op(event="staging_failed", run_id=run_id, model_name=model_name,
                        notify_config=notify_config, record=staged.outputs["verification"]),
              "alert & stop: staging failed")
    with dsl.If(staged.outputs["Output"] == "awaiting_approval", name="awaiting-approval"):
        alert(notify_op(event="awaiting_approval", run_id=run_id, model_name=model_name,
                        notify_config=notify_config, record=staged.outputs["verification"]),
              "stop: awaiting approval (conveyor approve | reject)")
    with dsl.If(staged.outputs["Output"] == "release", name="entry-granted"):
        production_release(cfg, alert, run_id, notify_config, store=store, model_name=model_name,
                           candidate=candidate, canary_config=canary_config, environments=environments,
                           target=target, deploy_config=deploy_config, rollout_config=rollout_config)
