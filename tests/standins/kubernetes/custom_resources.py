"""Every custom resource the project ships or generates is checked the way a cluster would check it:

1. against the served version's `openAPIV3Schema` of the unmodified upstream CRD
   (tests/upstream_crds/, the same files as ../shared/crds/; tests/standins/kubernetes/crd_schema.py applies them with
   the API server's structural-schema rules: defaults, unknown fields, required, types, enums,
   patterns, formats, list-map keys, preserve-unknown-fields), and its `x-kubernetes-validations`
   CEL rules with a real CEL engine (tests/standins/kubernetes/crd_cel.py), transition rules on an update;
2. by the upstream admission webhooks, ported in components/cluster/admission.py (KServe's
   InferenceService and InferenceGraph validators, Katib's Experiment validator, the training
   operator's PyTorchJob validator, Kubeflow Trainer's TrainJob and (Cluster)TrainingRuntime
   validators, the Spark Operator's SparkApplication validator; Gateway API has none);
3. for the kinds an SDK models (InferenceService, ServingRuntime, Experiment and its trial Job,
   Trial, SparkApplication, TrainJob), also field by field against the kserve / katib / kubernetes /
   kubeflow-spark-api / kubeflow-trainer-api models.
Katib's Experiment and Trial CRDs declare no structure at all (preserve-unknown-fields at the root),
so for those the webhook port and the SDK models do the real checking, as on a cluster; an
Experiment's trial template is also checked as the TrainJob or PyTorchJob it becomes, against that
kind's CRD and webhook.
"""

from __future__ import annotations

from typing import Any

from tests.standins.kubernetes.crd_cel import CelReport
from tests.standins.kubernetes.crd_schema import validate_resource


def validate_custom(obj: dict, old: dict | None = None, runtime: dict | None = None,
                    report: CelReport | None = None) -> None:
    """`runtime`: for a TrainJob, the (Cluster)TrainingRuntime it references, when known."""
    from components.cluster import admission
    from components.cluster.sdkvalidate import ManifestError, model_lookup, validate, validate_pydantic
    from components.common.errors import SpecError

    validate_resource(obj, old, report)
    kind = obj["kind"]
    body = {k: v for k, v in obj.items() if k != "status"}
    if kind == "InferenceService":
        from components.cluster.isvc import validate_inference_service

        validate_inference_service(obj, old)  # SDK models + KServe's webhook
    elif kind == "ServingRuntime":
        import kubernetes.client as k8s

        from components.cluster import kserve_sdk

        validate(obj, "V1alpha1ServingRuntime", model_lookup(kserve_sdk.load(), k8s))
    elif kind == "Experiment":
        from components.stages.search.katib import validate_experiment

        validate_experiment(obj)  # SDK models + Katib's webhook (+ the PyTorchJob/TrainJob webhooks for its trials)
        trial = trial_resource(obj)
        if trial["kind"] != "Job":
            validate_custom(trial, runtime=runtime, report=report)
    elif kind == "Trial":
        import kubeflow.katib as katib_models
        import kubernetes.client as k8s

        try:
            validate(body, "V1beta1Trial", model_lookup(katib_models, k8s))
        except ManifestError as exc:
            raise SpecError(f"Trial: {exc}") from exc
    elif kind == "SparkApplication":
        from kubeflow_spark_api.models import SparkV1beta2SparkApplication

        try:
            validate_pydantic(body, SparkV1beta2SparkApplication)
        except ManifestError as exc:
            raise SpecError(f"SparkApplication: {exc}") from exc
        admission.validate_sparkapplication(obj, old)
    elif kind == "TrainJob":
        from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

        try:
            validate_pydantic(body, TrainerV1alpha1TrainJob)
        except ManifestError as exc:
            raise SpecError(f"TrainJob: {exc}") from exc
        admission.validate_trainjob(obj, old, runtime)
    elif kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        admission.validate_training_runtime(obj, old)
    elif kind == "PyTorchJob":
        admission.validate_pytorchjob(obj)
    elif kind == "InferenceGraph":
        admission.validate_inference_graph(obj)


def trial_resource(experiment: dict[str, Any]) -> dict[str, Any]:
    """The trial template as the resource Katib creates from it: parameters at a feasible point,
    named and placed as Katib names trials."""
    from tests.support.katib_trial import feasible_point, trial_run_spec

    run_spec = trial_run_spec(experiment, feasible_point(experiment), f"{experiment['metadata']['name']}-x7k2p9qz")
    meta = {"name": f"{experiment['metadata']['name']}-x7k2p9qz",
            "namespace": experiment["metadata"].get("namespace", "default")}
    return {**run_spec, "metadata": {**(run_spec.get("metadata") or {}), **meta}}
