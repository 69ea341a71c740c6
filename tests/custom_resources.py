"""Every custom resource the project ships or generates is checked the way a cluster would check it:

1. against the served version's `openAPIV3Schema` of the unmodified upstream CRD
   (tests/upstream_crds/, the same files as ../shared/crds/; tests/crd_schema.py applies them with
   the API server's structural-schema rules: unknown fields, required, types, enums, patterns,
   list-map keys, preserve-unknown-fields);
2. by the upstream admission webhooks that matter, ported in components/common/admission.py
   (KServe's InferenceService validator, Katib's Experiment validator, the training operator's
   PyTorchJob validator for PyTorchJob trials);
3. for the kinds the SDKs model (InferenceService, ServingRuntime, Experiment and its trial Job),
   also field by field against the kserve / katib / kubernetes SDK models.
Katib's Experiment CRD declares no structure at all (preserve-unknown-fields at the root), so for an
Experiment the webhook port and the SDK models do the real checking, as on a cluster.
"""

from __future__ import annotations

from tests.crd_schema import validate_resource

ADMISSION = {"InferenceService", "Experiment"}


def validate_custom(obj: dict, old: dict | None = None) -> None:
    validate_resource(obj)
    kind = obj["kind"]
    if kind == "InferenceService":
        from components.deploy.isvc import validate_inference_service

        validate_inference_service(obj, old)  # SDK models + KServe's webhook
    elif kind == "ServingRuntime":
        import kubernetes.client as k8s

        from components.common.sdkvalidate import model_lookup, validate
        from components.serve import kserve_sdk

        validate(obj, "V1alpha1ServingRuntime", model_lookup(kserve_sdk.load(), k8s))
    elif kind == "Experiment":
        from components.search.katib import validate_experiment

        validate_experiment(obj)  # SDK models + Katib's webhook (+ the PyTorchJob webhook for its trials)
