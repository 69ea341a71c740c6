"""The compiled pipelines are kept in the repository (pipelines/compiled/, and as KFP resources in
the chart): compiling the code now must give the same documents, so any change to what a user
uploads is reviewed (regenerate with `make compile`). Each golden file reloads with the KFP SDK, and
the chart installs the resources when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT

NAMES = ("conveyor-data", "conveyor-training", "conveyor-continuous-training", "conveyor-monitoring",
         "conveyor-release")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from pipelines.compile import compile_all

    out = tmp_path_factory.mktemp("compiled")
    compile_all(str(out), k8s=True)
    return out


def _docs(path: Path) -> list:
    # The KFP compiler's leading comment lists parameter defaults in an unstable order: compare
    # the documents, not the text.
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("name", NAMES)
def test_golden_pipelines_match_what_the_code_compiles(compiled, name):
    golden = ROOT / "pipelines" / "compiled" / f"{name}.yaml"
    resources = ROOT / "charts" / "conveyor" / "files" / "pipelines" / f"{name}.k8s.yaml"
    assert _docs(golden) == _docs(compiled / f"{name}.yaml"), f"{golden} is stale: run `make compile` and review"
    assert _docs(resources) == _docs(compiled / f"{name}.k8s.yaml"), f"{resources} is stale: run `make compile`"


@pytest.mark.parametrize("name", NAMES)
def test_golden_pipelines_reload_with_the_kfp_sdk(name):
    from kfp import components

    component = components.load_component_from_file(str(ROOT / "pipelines" / "compiled" / f"{name}.yaml"))
    assert component.name == name


def test_chart_installs_the_pipeline_resources_when_asked():
    from tests.integration.test_chart import _render

    def kfp_objects(values):
        return [o for o in _render(values) if o["apiVersion"].startswith("pipelines.kubeflow.org/")]

    assert not kfp_objects({})
    objects = kfp_objects({"pipelines": {"install": True}})
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        [("Pipeline", n) for n in NAMES] + [("PipelineVersion", f"{n}-v1") for n in NAMES])
    from tests.standins.kubernetes.custom_resources import validate_custom

    for obj in objects:  # KFP's Pipeline / PipelineVersion CRD fields, unknown fields rejected
        validate_custom(obj)
        assert obj["metadata"]["namespace"]
        if obj["kind"] == "PipelineVersion":
            assert obj["spec"]["pipelineName"] == obj["metadata"]["name"].removesuffix("-v1")
            assert obj["spec"]["pipelineSpec"]["pipelineInfo"]["name"] == obj["spec"]["pipelineName"]


CUSTOM_RESOURCE_FILES = ("katib-experiment", "katib-experiment-job", "katib-experiment-trainjob",
                         "katib-experiment-pytorchjob", "inferenceservice-knative", "inferenceservice-standard",
                         "trainjob", "sparkapplication-ingest", "release-ab", "release-shadow", "prometheusrule")


def test_compiled_custom_resources_validate(compiled):
    """Every custom resource `conveyor compile` writes passes its upstream CRD (CEL rules evaluated)
    and the ported webhooks; each Katib trial template also as the TrainJob / PyTorchJob it becomes."""
    from tests.standins.kubernetes.crd_cel import CelReport
    from tests.standins.kubernetes.custom_resources import validate_custom

    report = CelReport()
    kinds = set()
    for name in CUSTOM_RESOURCE_FILES:
        for obj in _docs(compiled / f"{name}.yaml"):
            validate_custom(obj, report=report)
            kinds.add(obj["kind"])
    assert kinds == {"Experiment", "InferenceService", "TrainJob", "SparkApplication", "HTTPRoute", "PrometheusRule"}
    assert {r.crd for r in report.results} >= {"TrainJob", "HTTPRoute"}
    assert not report.by_status("failed") and not report.by_status("error")
