"""Structural checks for the custom resources the project ships (no cluster, so no CRDs to ask):
kserve SDK models for InferenceService and ServingRuntime, the katib check for Experiments, and
JSON schemas written from the upstream CRDs (tests/crd_schemas/) for the Prometheus operator's and
KFP's resources. Unknown fields are errors everywhere."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
SCHEMA_FOR = {"PrometheusRule": "prometheusrule.json", "PodMonitor": "podmonitor.json",
              "Pipeline": "kfp-pipeline.json", "PipelineVersion": "kfp-pipeline.json"}


def validate_custom(obj: dict) -> None:
    kind = obj["kind"]
    if kind == "InferenceService":
        from components.deploy.isvc import validate_inference_service

        validate_inference_service(obj)
    elif kind == "ServingRuntime":
        import kserve
        import kubernetes.client as k8s

        from components.common.sdkvalidate import model_lookup, validate

        validate(obj, "V1alpha1ServingRuntime", model_lookup(kserve, k8s))
    elif kind == "Experiment":
        from components.search.katib import validate_experiment

        validate_experiment(obj)
    elif kind in SCHEMA_FOR:
        import jsonschema

        jsonschema.validate(obj, json.loads((SCHEMAS / SCHEMA_FOR[kind]).read_text()))
    else:
        raise AssertionError(f"no structural check for custom resource kind {kind}")
