"""KFP component: ingest + clean + version. Binds parameters to `components.stages.ingest.engines.run_ingest`
(engine "local": this pod; "spark": a SparkApplication on the cluster, Spark local[N] under kfp.local)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Ingest raw files, clean and validate every row (quarantining the rest with a reason), and commit a content-"
    "addressed dataset version",
    ("version", "manifest_uri", "quarantine_uri"),
    version="The dataset version id (an identical input and cleaning config give the same id)",
)
def ingest_op(
    sources: list,
    dataset: str,
    store: str,
    source_settings: dict,
    cleaning: dict,
    result: Output[Artifact],
    counts: Output[Metrics],
    parent: str = "latest",
    engine: str = "local",
    spark_config: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
    cluster_config: dict = {},  # noqa: B006
    run_id: str = "",
    workers: int = 0,
) -> NamedTuple("IngestOutputs", version=str, manifest_uri=str, quarantine_uri=str):
    import json
    from collections import namedtuple

    from components.common.logs import StepLog
    from components.common.version import code_version
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.engines import run_ingest

    outcome = run_ingest(engine, list(sources), dataset, store, SourceSettings.model_validate(source_settings),
                         CleaningConfig.model_validate(cleaning), parent=None if parent == "none" else parent,
                         code_version=code_version(),
                         engine_config={"spark": spark_config, "cluster": cluster_config}, run_id=run_id,
                         workers=workers, log=StepLog("ingest", run_id))
    with open(result.path, "w") as handle:
        json.dump(outcome.to_json(), handle, indent=2)
    result.metadata.update({"version": outcome.version, "new": outcome.new})
    for key in ("rows_read", "rows_accepted", "rows_quarantined", "rows_total"):
        counts.log_metric(key, getattr(outcome, key))
    outputs = namedtuple("IngestOutputs", ["version", "manifest_uri", "quarantine_uri"])
    return outputs(outcome.version, outcome.manifest_uri, outcome.quarantine_uri or "")
