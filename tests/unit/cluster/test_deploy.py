"""InferenceService manifests for both KServe modes, validated against the kserve SDK models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from components.cluster.isvc import DeployConfig, build_inference_service, validate_inference_service
from components.common.errors import SpecError


def test_knative_mode_splits_with_canary_traffic_percent():
    isvc = build_inference_service(DeployConfig(mode="knative", gpus=1), "m", stable="s1", candidate="c2",
                                   canary_percent=25)
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25
    assert predictor["model"]["storageUri"] == "s3://conveyor/models/m/c2"  # the new revision
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["serviceAccountName"] == "conveyor-predictor"
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "Knative"
    assert ann["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert "canary" not in isvc["spec"]
    first = build_inference_service(DeployConfig(mode="knative"), "m", stable="s1")
    assert "canaryTrafficPercent" not in first["spec"]["predictor"]  # a first deployment takes 100%


def test_standard_mode_keeps_stable_and_adds_a_canary_entry():
    isvc = build_inference_service(DeployConfig(mode="standard"), "m", stable="s1", candidate="c2",
                                   canary_percent=10)
    assert isvc["spec"]["predictor"]["model"]["storageUri"].endswith("/m/s1")
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10 and canary["predictor"]["model"]["storageUri"].endswith("/m/c2")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_validation_rejects_unknown_fields_and_too_much_traffic():
    isvc = build_inference_service(DeployConfig(mode="standard"), "m", stable="s1", candidate="c2")
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["canaryTraficPercent"] = 5
    with pytest.raises(SpecError, match="unknown field 'canaryTraficPercent' in V1beta1PredictorSpec"):
        validate_inference_service(bad)
    bad = copy.deepcopy(isvc)
    second = copy.deepcopy(bad["spec"]["canary"][0]) | {"trafficPercent": 95}
    second["predictor"]["name"] = "v-c3"
    bad["spec"]["canary"].append(second)
    with pytest.raises(SpecError, match=r"sum of spec.canary\[\].trafficPercent \(105\) must be <= 100"):
        validate_inference_service(bad)
    with pytest.raises(SpecError, match=r"outside 0\.\.100"):
        build_inference_service(DeployConfig(), "m", stable="s", candidate="c", canary_percent=150)


def test_compile_writes_both_modes(tmp_path):
    import yaml

    from pipelines.compile import compile_all

    written = compile_all(str(tmp_path))["compiled"]
    for mode in ("knative", "standard"):
        manifest = yaml.safe_load(Path(written[f"inferenceservice-{mode}"]).read_text())
        validate_inference_service(manifest)
