"""The data pipeline: ingest -> report -> split -> featurize.

Built from a config so that the compiled YAML carries the config's values as parameter defaults
(visible and editable in the KFP dashboard's run form).
"""

from typing import Any, NamedTuple

from kfp import dsl, kubernetes

from components.config import ConveyorConfig
from components.featurize.component import featurize_op
from components.ingest.component import ingest_op
from components.parameters import documented
from components.report.component import report_op
from components.split.component import split_op

CLUSTER_STORE = "s3://conveyor"


def audited(task):
    """A step that writes audit entries names its actor as the KFP run and the pod's ServiceAccount
    (components.common.audit.default_actor), both from the pod itself through the downward API:
    KFP labels every pod of a run with pipeline/runid."""
    kubernetes.use_field_path_as_env(task, env_name="CONVEYOR_SERVICE_ACCOUNT", field_path="spec.serviceAccountName")
    kubernetes.use_field_path_as_env(task, env_name="CONVEYOR_RUN_ID", field_path="metadata.labels['pipeline/runid']")
    return task

class DataSteps(NamedTuple):
    version: Any      # the ingest step's version output
    splits: Any       # the split task: outputs train / validation / test
    features: Any     # the featurize task: outputs featurizer / {train,validation,test}_features


def data_steps(sources, dataset, store, source_settings, cleaning, split_config, features_config, report_config,
               reference_version="", parent="latest", engine="local", spark_config=None,
               cluster_config=None) -> DataSteps:
    """Ingest -> report, split -> featurize inside the current pipeline."""
    ingested = ingest_op(sources=sources, dataset=dataset, store=store, source_settings=source_settings,
                         cleaning=cleaning, parent=parent, engine=engine, spark_config=spark_config or {},
                         cluster_config=cluster_config or {},
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
            "engine": cfg.data.engine, "spark_config": dump["data"]["spark"], "cluster_config": dump["cluster"]}


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
    ) -> str:
        return data_steps(sources, dataset, store, source_settings, cleaning, split_config, features_config,
                          report_config, reference_version=reference_version, parent=parent, engine=engine,
                          spark_config=spark_config, cluster_config=cluster_config).version

    return data_pipeline
