"""KFP components: monitor a served model's logged window (verdict + Evidently HTML + trigger
decision), and, on the cluster, submit the continuous-training pipeline when told to retrain."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Judge the served model's logged window (input and prediction drift, live accuracy) and decide whether to retrain",
    ("action", "status"),
    verdict="The monitoring verdict (drift signals, live accuracy) as JSON",
    report="The Evidently drift report (HTML)",
    status="ok | drift | insufficient_data",
)
def monitor_op(
    store: str,
    model_name: str,
    monitor_config: dict,
    split_config: dict,
    verdict: Output[Artifact],
    report: Output[HTML],
    decision: Output[Artifact],
) -> NamedTuple("MonitorOutputs", action=str, status=str):
    import datetime as dt
    import json
    from collections import namedtuple

    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.monitor import trigger
    from components.stages.monitor.config import MonitorConfig
    from components.stages.monitor.executor import expire_logs, monitor_window
    from components.stages.split.config import SplitConfig

    st, cfg = open_store(store), MonitorConfig.model_validate(monitor_config)
    now = dt.datetime.now(dt.UTC)
    expired = expire_logs(st, model_name, cfg.retention_days, now)
    result, page = monitor_window(st, model_name, cfg, SplitConfig.model_validate(split_config), now=now)
    chosen = trigger.decide(cfg.trigger, result, trigger.history(st, model_name), now)
    chosen["record"] = trigger.record(st, model_name, chosen)
    result["retention"] = expired
    if cfg.pushgateway_url:
        from components.stages.monitor.alerts import push

        push(cfg.pushgateway_url, result, chosen)
    for artifact, value in ((verdict, result), (decision, chosen)):
        with open(artifact.path, "w") as handle:
            json.dump(value, handle, indent=2, default=str)
    with open(report.path, "w") as handle:
        handle.write(page)
    verdict.metadata.update({"status": result["status"], **{k: str(v) for k, v in result.get("signals", {}).items()}})
    decision.metadata.update({"action": chosen["action"]})
    StepLog("monitor")(f"monitor: {result['status']}; decision {chosen['action']}: {'; '.join(chosen['reasons'])}",
                       model=model_name, status=result["status"], action=chosen["action"])
    return namedtuple("MonitorOutputs", ["action", "status"])(chosen["action"], result["status"])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Submit the continuous-training pipeline through the KFP API (once per retrain decision)",
    ("Output",),
    sources="New data: the continuous-training run's sources",
    config="The continuous-training run's `config` parameter (search, train, best_trial, monitor)",
    Output="The submitted (or adopted) KFP run id",
)
def submit_retraining_op(store: str, model_name: str, sources: list, kfp_host: str, pipeline_name: str,
                         experiment: str, config: dict, features_config: dict) -> str:
    from components.common.config import merged_config
    from components.common.storage import open_store
    from components.composition.config import config_from_dict, run_config
    from components.stages.monitor.submit import submit_retraining

    # Checked here, at the entry point; retrain_parameters re-checks the training sections it
    # replaces with the champion's.
    checked = config_from_dict(merged_config(config, features=features_config), origin="config")
    dump = checked.model_dump(mode="json", exclude_none=True)
    return submit_retraining(open_store(store), model_name, sources, kfp_host, pipeline_name, experiment,
                             run_config(dump), dump["features"])
