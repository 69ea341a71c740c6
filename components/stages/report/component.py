"""KFP component: data-quality report (HTML) and drift verdict for a dataset version."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Data-quality report (Evidently HTML) and drift verdict of a dataset version",
    ("Output",),
    report="The data report (Evidently HTML)",
    verdict="Statistics and the drift verdict (JSON)",
    Output="True when the report flags dataset drift vs reference_version",
)
def report_op(
    store: str,
    dataset: str,
    version: str,
    report_config: dict,
    report: Output[HTML],
    verdict: Output[Artifact],
    summary: Output[Metrics],
    reference_version: str = "",
) -> bool:
    import json

    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.report.config import ReportConfig
    from components.stages.report.executor import report_for_versions

    result = report_for_versions(open_store(store), dataset, version, reference_version or None,
                                 ReportConfig.model_validate(report_config), html_path=report.path)
    with open(verdict.path, "w") as handle:
        json.dump(result, handle, indent=2, default=str)
    summary.log_metric("rows", result["statistics"]["rows"])
    drifted = bool(result["drift"] and result["drift"]["dataset_drift"])
    if result["drift"]:
        summary.log_metric("drifted_share", result["drift"]["drifted_share"])
        summary.log_metric("dataset_drift", int(drifted))
    StepLog("report")(f"report {dataset}@{version}: {result['statistics']['rows']} rows"
                      + (f"; drift {'YES' if drifted else 'no'} vs {reference_version}" if result["drift"] else ""),
                      dataset=dataset, version=version, rows=result["statistics"]["rows"], drift=drifted)
    return drifted
