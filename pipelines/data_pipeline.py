"""The data pipeline: ingest -> report -> split -> featurize.

Built from a config so that the compiled YAML carries the config's values as parameter defaults
(visible and editable in the KFP dashboard's run form).
"""

from typing import Any, NamedTuple

from kfp import dsl, kubernetes

from components.composition.config import ConveyorConfig
from components.composition.parameters import documented
from components.stages.featurize.component import featurize_op
from components.stages.ingest.component import ingest_op
from components.stages.report.component import report_op
from components.stages.split.component import split_op

CLUSTER_STORE = "s3://conveyor"


def audited(task):
    """A step that writes audit entries names its actor as the KFP run and the pod's ServiceAccount
    (components.common.audit.default_actor), both from the pod itself through the downward API:
    KFP labels every pod of a run with pipeline/runid."""
    kubernetes.use_field_path_as_env(task, env_name="CONVEYOR_SERVICE_ACCOUNT", field_path="spec.serviceAccountName")
    kubernetes.use_field_path_as_env(task, env_name="CONVEYOR_RUN_ID", field_path="metadata.labels['pipeline/runid']")
    return task

S3_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ENCRYPTION_KEYS = ("CONVEYOR_STORE_ENCRYPTION", "CONVEYOR_STORE_KMS_KEY_ID", "CONVEYOR_STORE_SSE_C_KEY")
S3_CA_DIR, TOKEN_DIR = "/etc/conveyor/s3-ca", "/etc/conveyor/inference-token"
# Steps that send requests to the predictors (the replay of staging and release)
CALLS_PREDICTORS = ("stage-op", "release-op")


def grant_store_access(cfg: ConveyorConfig) -> None:
    """Every step of the pipeline being defined that takes a `store` gets the S3 Secret's keys as
    env (the encryption keys optional), the endpoint's CA when cluster.s3_ca_secret names one, and
    a step that calls the predictors their token (cluster.inference_token_secret). Called last in
    a pipeline function: it reads the tasks the function made."""
    # lazy: KFP's own registry of the tasks a pipeline function has made
    from kfp.dsl.pipeline_context import Pipeline

    cluster = cfg.cluster
    for name, task in Pipeline.get_default_pipeline().tasks.items():
        if "store" not in (task.component_spec.inputs or {}):
            continue
        kubernetes.use_secret_as_env(task, secret_name=cluster.s3_secret, secret_key_to_env=dict(zip(S3_KEYS, S3_KEYS,
                                                                                                    strict=True)))
        kubernetes.use_secret_as_env(task, secret_name=cluster.s3_secret, optional=True,
                                     secret_key_to_env=dict(zip(ENCRYPTION_KEYS, ENCRYPTION_KEYS, strict=True)))
        if cluster.s3_ca_secret:
            kubernetes.use_secret_as_volume(task, secret_name=cluster.s3_ca_secret, mount_path=S3_CA_DIR)
            task.set_env_variable("AWS_CA_BUNDLE", f"{S3_CA_DIR}/ca.crt")
        if cluster.inference_token_secret and name.startswith(CALLS_PREDICTORS):
            kubernetes.use_secret_as_volume(task, secret_name=cluster.inference_token_secret, mount_path=TOKEN_DIR)
            task.set_env_variable("CONVEYOR_INFERENCE_TOKEN_FILE", f"{TOKEN_DIR}/token")


class DataSteps(NamedTuple):
    version: Any      # the ingest step's version output
    splits: Any       # the split task: outputs train / validation / test
    features: Any     # the featurize task: outputs featurizer / {train,validation,test}_features


def data_steps(sources, dataset, store, source_settings, cleaning, split_config, features_config, report_config,
               reference_version="", parent="latest", engine="local", spark_config=None,
               cluster_config=None, workers=0) -> DataSteps:
    """Ingest -> report, split -> featurize inside the current pipeline."""
    ingested = ingest_op(sources=sources, dataset=dataset, store=store, source_settings=source_settings,
                         cleaning=cleaning, parent=parent, engine=engine, spark_config=spark_config or {},
                         cluster_config=cluster_config or {}, workers=workers,
                         run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    audited(ingested).set_display_name("ingest, clean, version")
    version = ingested.outputs["version"]
    report_op(store=store, dataset=dataset, version=version, report_config=report_config,
              reference_version=reference_version).set_display_name("data report")
    splits = split_op(store=store, dataset=dataset, version=version, split_config=split_config)
    splits.set_display_name("split (train / validation / test)")
    features = featurize_op(store=store, train=splits.outputs["train"], validation=splits.outputs["validation"],
                            test=splits.outputs["test"], features_config=features_config, engine=engine,
                            spark_config=spark_config or {}, cluster_config=cluster_config or {},
                            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    features.set_display_name("featurize (fit on train)")
    return DataSteps(version, splits, features)


def section_defaults(cfg: ConveyorConfig, collection: str = "reference") -> dict:
    dump = cfg.model_dump(mode="json", exclude_none=True)
    settings = cfg.data.settings_for(collection).model_dump(mode="json", exclude_none=True)
    return {"source_settings": settings, "cleaning": dump["cleaning"], "split_config": dump["split"],
            "features_config": dump["features"], "report_config": dump["report"],
            "engine": cfg.data.engine, "spark_config": dump["data"]["spark"], "cluster_config": dump["cluster"],
            "ingest_workers": cfg.data.workers or 0}


def build_data_pipeline(cfg: ConveyorConfig, store: str = CLUSTER_STORE):
    sections = section_defaults(cfg)

    @dsl.pipeline(name="conveyor-data",
                  description="Ingest raw text, quarantine bad rows, version the data, report on it, split "
                              "and featurize it.")
    @documented("The data pipeline", ("Output",), Output="The dataset version id")
    def data_pipeline(
        sources: list = list(cfg.data.reference),  # noqa: B006 (KFP reads defaults from the signature)
        dataset: str = cfg.data.dataset,
        store: str = store,
        reference_version: str = "",
        parent: str = "latest",
        source_settings: dict = sections["source_settings"],
        cleaning: dict = sections["cleaning"],
        split_config: dict = sections["split_config"],
        features_config: dict = sections["features_config"],
        report_config: dict = sections["report_config"],
        engine: str = sections["engine"],  # local | spark (a SparkApplication: Spark Operator >= 2.x)
        spark_config: dict = sections["spark_config"],
        cluster_config: dict = sections["cluster_config"],
        ingest_workers: int = sections["ingest_workers"],  # engine=local: processes (0: the pod's cores)
    ) -> str:
        version = data_steps(sources, dataset, store, source_settings, cleaning, split_config, features_config,
                             report_config, reference_version=reference_version, parent=parent, engine=engine,
                             spark_config=spark_config, cluster_config=cluster_config,
                             workers=ingest_workers).version
        grant_store_access(cfg)
        return version

    return data_pipeline
