"""The release pipeline: one staged, approved version released into production by the configured
strategy. `conveyor approve` runs it (kfp.local) once the approval is recorded; on a cluster it is
the same step a user can submit from the KFP dashboard, and what the chart's release Job runs
(docs/deployment.md: Environments and approval). Refused unless the version passed staging and
entry to production was granted (components.stages.release.environments.require_entry)."""

from kfp import dsl

from components.composition.config import ConveyorConfig
from components.composition.parameters import documented
from components.stages.notify.component import exit_notify_op
from pipelines.data_pipeline import CLUSTER_STORE, grant_store_access
from pipelines.training_pipeline import _alerting, production_release


def build_release_pipeline(cfg: ConveyorConfig, store: str = CLUSTER_STORE, target: str = "kserve"):
    dump = cfg.model_dump(mode="json", exclude_none=True)
    alert = _alerting(cfg)
    description = ("Release an approved version into production by the configured strategy (canary, blue-green, "
                   "A/B or shadow) with automated analysis; refused unless it passed staging and was approved.")

    @dsl.pipeline(name="conveyor-release", description=description)
    @documented(description)
    def release_pipeline(
        candidate: str,
        store: str = store,
        model_name: str = cfg.model_name,
        environment: str = cfg.environments[-1].name,
        environments: list = dump["environments"],
        canary_config: dict = dump["canary"],
        rollout_config: dict = dump["rollout"],
        deploy_target: str = target,
        deploy_config: dict = dump["deploy"],
        notify_config: dict = dump["notify"],
    ):
        run_id = f"{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
        failed = exit_notify_op(run_id=run_id, model_name=model_name, notify_config=notify_config)
        alert(failed, "alert on failure")
        with dsl.ExitHandler(failed, name="steps"):
            production_release(cfg, alert, run_id, notify_config, store=store, model_name=model_name,
                               candidate=candidate, canary_config=canary_config, environment=environment,
                               environments=environments, target=deploy_target, deploy_config=deploy_config,
                               rollout_config=rollout_config)
        grant_store_access(cfg)

    return release_pipeline
