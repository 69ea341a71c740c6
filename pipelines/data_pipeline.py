"""The data pipeline: ingest -> report -> split -> featurize.

Built from a config so that the compiled YAML carries the config's values as parameter defaults
(visible and editable in the KFP dashboard's run form).
"""

from kfp import dsl

from components.common.config import ConveyorConfig
from components.featurize.component import featurize_op
from components.ingest.component import ingest_op
from components.report.component import report_op
from components.split.component import split_op

CLUSTER_STORE = "s3://conveyor"

def build_data_pipeline(cfg: ConveyorConfig, store: str = CLUSTER_STORE):
    source_settings = cfg.data.source.model_dump(mode="json", exclude_none=True)
    cleaning = cfg.cleaning.model_dump(mode="json", exclude_none=True)
    split_config = cfg.split.model_dump(mode="json", exclude_none=True)
    features_config = cfg.features.model_dump(mode="json", exclude_none=True)
    report_config = cfg.report.model_dump(mode="json", exclude_none=True)

    @dsl.pipeline(name="conveyor-data",
                  description="Ingest raw text, quarantine bad rows, version the data, report on it, split "
                              "and featurize it.")
    def data_pipeline(
        sources: list = list(cfg.data.reference),  # noqa: B006 (KFP reads defaults from the signature)
        dataset: str = cfg.data.dataset,
        store: str = store,
        reference_version: str = "",
        parent: str = "latest",
        source_settings: dict = source_settings,
        cleaning: dict = cleaning,
        split_config: dict = split_config,
        features_config: dict = features_config,
        report_config: dict = report_config,
    ) -> str:
        ingested = ingest_op(sources=sources, dataset=dataset, store=store, source_settings=source_settings,
                             cleaning=cleaning, parent=parent)
        ingested.set_display_name("ingest, clean, version")
        version = ingested.outputs["version"]
        report_op(store=store, dataset=dataset, version=version, report_config=report_config,
                  reference_version=reference_version).set_display_name("data report")
        splits = split_op(store=store, dataset=dataset, version=version, split_config=split_config)
        featurize_op(train=splits.outputs["train"], validation=splits.outputs["validation"],
                     test=splits.outputs["test"], features_config=features_config)
        return version

    return data_pipeline
