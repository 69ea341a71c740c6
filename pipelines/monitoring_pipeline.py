"""The monitoring pipeline: judge the served model's logged window and, when the trigger says
retrain, submit the continuous-training pipeline through the KFP API.

Schedule it as a KFP recurring run (README) or with the chart's CronJob. `conveyor run` runs the
monitor step through kfp.local and, on a retrain decision, runs the continuous-training pipeline
itself through kfp.local (with_submit=False), since no KFP API server runs locally.
"""

from kfp import dsl

from components.composition.config import ConveyorConfig, run_config
from components.composition.parameters import documented
from components.stages.monitor.component import monitor_op, submit_retraining_op
from pipelines.data_pipeline import CLUSTER_STORE, audited, grant_store_access

KFP_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"


def build_monitoring_pipeline(cfg: ConveyorConfig, store: str = CLUSTER_STORE, with_submit: bool = True):
    dump = cfg.model_dump(mode="json", exclude_none=True)
    training_config = run_config(dump)

    @dsl.pipeline(name="conveyor-monitoring",
                  description="Compare the served model's logged requests and predictions with its training "
                              "data (Evidently), decide retrain / wait / insufficient data with the trigger's "
                              "guardrails, and submit the continuous-training pipeline on retrain.")
    @documented("The monitoring pipeline", ("Output",),
                Output="The trigger's action: retrain | wait | insufficient_data")
    def monitoring_pipeline(
        store: str = store,
        model_name: str = cfg.model_name,
        monitor_config: dict = dump["monitor"],
        split_config: dict = dump["split"],
        new_data_sources: list = list(cfg.data.production),  # noqa: B006 (KFP reads defaults from the signature)
        kfp_host: str = KFP_HOST,
        retrain_pipeline: str = "conveyor-continuous-training",
        experiment: str = "conveyor",
        training_config: dict = training_config,  # the continuous-training run's `config` (search, train, ...)
        features_config: dict = dump["features"],
    ) -> str:
        monitored = monitor_op(store=store, model_name=model_name, monitor_config=monitor_config,
                               split_config=split_config)
        audited(monitored).set_display_name("monitor: drift, live accuracy, trigger decision")
        monitored.set_caching_options(False)  # a new window every run
        if with_submit:
            with dsl.If(monitored.outputs["action"] == "retrain", name="retrain"):
                submitted = submit_retraining_op(store=store, model_name=model_name, sources=new_data_sources,
                                                 kfp_host=kfp_host, pipeline_name=retrain_pipeline,
                                                 experiment=experiment, config=training_config,
                                                 features_config=features_config)
                submitted.set_display_name("submit continuous training (KFP)")
                submitted.set_caching_options(False)
        grant_store_access(cfg)
        return monitored.outputs["action"]

    return monitoring_pipeline
