"""The upstream admission rules that Conveyor's custom resources must pass, ported.

A CRD schema says nothing about these (see tests/upstream_crds/README.md): on a cluster the
validating webhooks of KServe, Katib and the training operator refuse what breaks them. Each rule
names the upstream file it comes from; messages keep the upstream wording where a user would
search for it. Pure functions over manifest dicts: the deploy step and the Katib launcher check
before they send, and the tests' API stand-in applies them as the webhooks would.
"""

from __future__ import annotations

import json
import re
from typing import Any

from components.common.errors import AdmissionError


def _fail(webhook: str, errors: list[str]) -> None:
    if errors:
        raise AdmissionError(f"admission webhook {webhook} denied the request: " + "; ".join(errors))


# -- KServe: pkg/apis/serving/v1beta1/inference_service_validation.go (and its _test.go, whose
#    TestValidateCanarySpecs / TestValidatePredictorNameChange give the canary rules of v0.20+) --
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # IsvcNameFmt
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
TARGET_UTILIZATION = "serving.kserve.io/targetUtilizationPercentage"
IMPLEMENTATIONS = ("model", "containers", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                   "huggingface", "pmml", "lightgbm", "paddle")


def _standard(meta: dict[str, Any]) -> bool:
    return (meta.get("annotations") or {}).get(DEPLOYMENT_MODE) in ("Standard", "RawDeployment")


def validate_inference_service(obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    errors: list[str] = []
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = meta.get("name", "")
    if not ISVC_NAME.match(name):
        errors.append(f"the InferenceService \"{name}\" is invalid: a InferenceService name must consist of lower "
                      "case alphanumeric characters or '-', and must start with alphabetical character")
    target = (meta.get("annotations") or {}).get(TARGET_UTILIZATION)
    if target is not None and not (target.isdigit() and 1 <= int(target) <= 100):
        errors.append("The target utilization percentage should be a [1-100] integer.")
    predictor = spec.get("predictor") or {}
    for component in ("predictor", "transformer", "explainer"):
        if component in spec and component != "explainer":
            found = [k for k in IMPLEMENTATIONS if (spec[component] or {}).get(k)]
            if len(found) != 1 and not (component == "transformer" and found == ["containers"]):
                errors.append(f"exactly one of {'/'.join(IMPLEMENTATIONS)} must be specified in {component} "
                              f"(found {found or 'none'})")
    canaries = spec.get("canary") or []
    if canaries:
        errors += _canary_errors(meta, predictor, canaries)
    if old is not None and _standard(meta):
        before = (old.get("spec") or {}).get("predictor") or {}
        if before.get("name", "") != predictor.get("name", "") and before.get("model") == predictor.get("model"):
            errors.append("predictor.name change requires a model change")
    _fail("inferenceservice.kserve-webhook-server.validator", errors)


def _canary_errors(meta: dict[str, Any], predictor: dict[str, Any], canaries: list[dict]) -> list[str]:
    if not _standard(meta):
        return ["spec.canary is only supported in Standard deployment mode"]
    errors = []
    if not predictor.get("model"):
        errors.append("spec.canary requires a stable predictor with a model")
    stable_min = predictor.get("minReplicas", 1)
    names: set[str] = set()
    total = 0
    for i, canary in enumerate(canaries):
        where = f"spec.canary[{i}]"
        p = canary.get("predictor") or {}
        name = p.get("name", "")
        if not name:
            errors.append(f"{where}.predictor.name is required")
        elif name in names:
            errors.append(f"{where}.predictor.name {name!r} is duplicated")
        elif name == predictor.get("name"):
            errors.append(f"{where}.predictor.name {name!r} conflicts with stable predictor name")
        names.add(name)
        if p.get("maxReplicas"):
            errors.append(f"{where}.predictor must not set maxReplicas (canaries run fixed replicas)")
        if p.get("workerSpec") is not None:
            errors.append(f"{where}.predictor must not set workerSpec")
        if p.get("minReplicas") is not None and p["minReplicas"] > stable_min:
            errors.append(f"{where}.predictor.minReplicas ({p['minReplicas']}) must not exceed stable "
                          f"minReplicas ({stable_min})")
        total += canary.get("trafficPercent", 0)
    if total > 100:
        errors.append(f"sum of spec.canary[].trafficPercent ({total}) must be <= 100")
    return errors


# -- Katib: pkg/webhook/v1beta1/experiment/validator/validator.go (v0.19), with the constants of
#    pkg/controller.v1beta1/consts/const.go and the algorithm names of the shipped katib-config --
ALGORITHMS = {"random", "grid", "tpe", "multivariate-tpe", "cmaes", "hyperband", "bayesianoptimization",
              "enas", "darts", "pbt", "sobol"}
EARLY_STOPPING = {"medianstop"}
COLLECTORS = {"StdOut", "File", "TensorFlowEvent", "Prometheus", "Custom", "None", "Push"}
PARAM_TYPES = {"int", "double", "categorical", "discrete", "unknown"}
DISTRIBUTIONS = {"", "uniform", "logUniform", "normal", "logNormal", "unknown"}
META_KEYS = {"Name", "Namespace", "Kind", "APIVersion", "Labels", "Annotations"}
PARAM_REF = re.compile(r"\$\{trialParameters\..+?\}")     # TrialTemplateParamReplaceFormatRegex
META_REF = re.compile(r"\$\{trialSpec\.(.+?)\}")           # TrialTemplateMetaReplaceFormatRegex
META_PARSE = re.compile(r"(.+)\[(.+)]")                    # TrialTemplateMetaParseFormatRegex
EXPERIMENT_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?")


def validate_experiment(obj: dict[str, Any]) -> None:
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if not EXPERIMENT_NAME.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: name must consist of lower case alphanumeric "
                      "characters or '-', start with an alphabetic character, and end with an alphanumeric character")
    spec = obj.get("spec") or {}
    max_trials, parallel, max_failed = (spec.get(k) for k in ("maxTrialCount", "parallelTrialCount",
                                                              "maxFailedTrialCount"))
    if max_failed is not None and max_failed < 0:
        errors.append("spec.maxFailedTrialCount: should not be less than 0")
    if max_trials is not None and max_trials <= 0:
        errors.append("spec.maxTrialCount: must be greater than 0")
    if parallel is not None and parallel <= 0:
        errors.append("spec.parallelTrialCount: must be greater than 0")
    if max_trials is not None and max_failed is not None and max_failed > max_trials:
        errors.append("spec.maxFailedTrialCount: should be less than or equal to spec.maxTrialCount")
    if max_trials is not None and parallel is not None and parallel > max_trials:
        errors.append("spec.parallelTrialCount: should be less than or equal to spec.maxTrialCount")
    objective = spec.get("objective")
    if not objective:
        _fail("validator.experiment.katib.kubeflow.org", [*errors, "spec.objective: Required value"])
    if objective.get("type") not in ("minimize", "maximize"):
        errors.append(f"spec.objective.type: Invalid value: {objective.get('type')!r}: must be minimize or maximize")
    if not objective.get("objectiveMetricName"):
        errors.append("spec.objective.objectiveMetricName: Required value")
    if objective.get("objectiveMetricName") in (objective.get("additionalMetricNames") or []):
        errors.append("spec.objective.additionalMetricNames: should not contain spec.objective.objectiveMetricName")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName", "")
    if algorithm not in ALGORITHMS:
        errors.append(f"spec.algorithm.algorithmName: Invalid value: {algorithm!r}: unable to get Suggestion config "
                      f"data for algorithm {algorithm}")
    early = spec.get("earlyStopping")
    if early is not None and early.get("algorithmName") not in EARLY_STOPPING:
        errors.append(f"spec.earlyStopping.algorithmName: Invalid value: {early.get('algorithmName')!r}")
    if spec.get("resumePolicy", "") not in ("", "Never", "LongRunning", "FromVolume"):
        errors.append(f"spec.resumePolicy: Invalid value: {spec['resumePolicy']!r}: invalid ResumePolicyType")
    parameters = spec.get("parameters") or []
    if not parameters and not spec.get("nasConfig"):
        errors.append("spec: spec.parameters or spec.nasConfig must be specified")
    errors += _parameter_errors(parameters)
    errors += _trial_template_errors(spec, {p.get("name") for p in parameters})
    collector = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")
    if collector not in COLLECTORS:
        errors.append(f"spec.metricsCollectorSpec.collector.kind: Invalid value: {collector!r}: invalid metrics "
                      "collector kind")
    _fail("validator.experiment.katib.kubeflow.org", errors)


def _parameter_errors(parameters: list[dict[str, Any]]) -> list[str]:
    errors = []
    for i, p in enumerate(parameters):
        where = f"spec.parameters[{i}]"
        kind, space = p.get("parameterType"), p.get("feasibleSpace") or {}
        if kind not in PARAM_TYPES:
            errors.append(f"{where}.parameterType: parameterType: {kind} is not supported")
        if space.get("distribution", "") not in DISTRIBUTIONS:
            errors.append(f"{where}.feasibleSpace.distribution: distribution: {space['distribution']} is not supported")
        if not space:
            errors.append(f"{where}.feasibleSpace: feasibleSpace must be specified")
        elif kind in ("double", "int"):
            if space.get("list"):
                errors.append(f"{where}.feasibleSpace.list: feasibleSpace.list is not supported for parameterType: "
                              f"{kind}")
            if not space.get("max") or not space.get("min"):
                errors.append(f"{where}.feasibleSpace.max: feasibleSpace.max or feasibleSpace.min must be specified "
                              f"for parameterType: {kind}")
        elif kind in ("categorical", "discrete") and any(space.get(k) for k in ("max", "min", "step")):
            errors.append(f"{where}.feasibleSpace: feasibleSpace .max, .min and .step is not supported for "
                          f"parameterType: {kind}")
    return errors


def _is_meta_key(reference: str) -> bool:
    match = META_REF.search(reference)
    if not match:
        return False
    key = match.group(1)
    sub = META_PARSE.fullmatch(key)
    return key in META_KEYS or bool(sub and sub.group(1) in META_KEYS)


def _trial_template_errors(spec: dict[str, Any], experiment_params: set[str]) -> list[str]:
    template = spec.get("trialTemplate")
    if not template:
        return ["spec.trialTemplate: Required value"]
    errors = []
    if not template.get("primaryContainerName"):
        errors.append("spec.trialTemplate.primaryContainerName: Required value")
    if not template.get("successCondition") or not template.get("failureCondition"):
        errors.append("spec.trialTemplate: successCondition and failureCondition must be specified")
    if template.get("trialParameters") is None:
        return [*errors, "spec.trialTemplate.trialParameters: Required value"]
    trial_spec = template.get("trialSpec")
    if trial_spec is None:
        return [*errors, "spec.trialTemplate.TrialSource: spec.trialTemplate.trialSpec or "
                         "spec.trialTemplate.configMap must be specified"]
    text = json.dumps(trial_spec)
    names: set[str] = set()
    refs: set[str] = set()
    for i, param in enumerate(template["trialParameters"]):
        where = f"spec.trialTemplate.trialParameters[{i}]"
        name, ref = param.get("name", ""), param.get("reference", "")
        if not name or not ref or "{" in name or "}" in name:
            errors.append(f"{where}: name and reference must be specified and name must not contain '{{' or '}}'")
            continue
        if name in names:
            errors.append(f"{where}.name: parameter name {name} can't be duplicated")
            continue
        if ref in refs:
            errors.append(f"{where}.reference: parameter reference {ref} can't be duplicated")
            continue
        names.add(name)
        refs.add(ref)
        if experiment_params and not _is_meta_key(ref) and ref not in experiment_params:
            errors.append(f"{where}.reference: parameter reference {ref} does not exist in spec.parameters")
        placeholder = f"${{trialParameters.{name}}}"
        if placeholder not in text:
            return [*errors, f"{where}.name: parameter name: {name} in spec.trialParameters not found in "
                             "spec.trialTemplate"]
        text = text.replace(placeholder, "test-value")
    left = PARAM_REF.findall(text)
    if left:
        errors.append(f"spec.trialTemplate: parameters: {left} in spec.trialTemplate not found in "
                      "spec.trialParameters")
    run_spec = json.loads(text)
    run_meta = run_spec.get("metadata") or {}
    if run_meta.get("name") or run_meta.get("namespace"):
        errors.append("spec.trialTemplate: metadata.name and metadata.namespace in spec.trialTemplate must be omitted")
    if not run_spec.get("apiVersion") or not run_spec.get("kind"):
        errors.append("spec.trialTemplate: APIVersion and Kind in spec.trialTemplate must be specified")
    # pkg/webhook/v1beta1/pod/inject_webhook.go: the metrics collector is injected beside the
    # container named primaryContainerName; a trial pod without it never reports a metric.
    containers = [c.get("name") for pod in _pod_templates(run_spec) for c in (pod or [])]
    primary = template.get("primaryContainerName")
    if primary and containers and primary not in containers:
        errors.append(f"spec.trialTemplate.primaryContainerName: {primary!r} is not a container of the trial spec "
                      f"(containers: {containers}); Katib cannot find the primary container to collect metrics from")
    checks = {"PyTorchJob": validate_pytorchjob, "TrainJob": validate_trainjob}
    if run_spec.get("kind") in checks:
        try:  # as the trial's own webhook will see it, named as Katib names trials
            checks[run_spec["kind"]]({**run_spec, "metadata": {"name": "trial-name"}})
        except AdmissionError as exc:
            errors.append(f"spec.trialTemplate.trialSpec: {exc}")
    return errors


def _pod_templates(run_spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    spec = run_spec.get("spec") or {}
    if run_spec.get("kind") == "Job":
        return [((spec.get("template") or {}).get("spec") or {}).get("containers")]
    if run_spec.get("kind") == "PyTorchJob":
        return [((r.get("template") or {}).get("spec") or {}).get("containers")
                for r in (spec.get("pytorchReplicaSpecs") or {}).values()]
    if run_spec.get("kind") == "TrainJob":  # the runtime's containers, as far as the patches name them
        return [((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
                .get("containers") for patch in spec.get("runtimePatches") or []
                for job in ((((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {})
                            .get("replicatedJobs") or [])]
    return []


# -- Training operator: pkg/webhooks/pytorch/pytorchjob_webhook.go and pkg/webhooks/utils
#    (ValidateReplicaSpecs), v1.8/v1.9 --
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PYTORCH_CONTAINER = "pytorch"  # PyTorchJobDefaultContainerName


def validate_pytorchjob(obj: dict[str, Any]) -> None:
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63 or not DNS1035.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: should match a DNS-1035 label")
    specs = (obj.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    if not specs:
        errors.append("spec.pytorchReplicaSpecs: Required value: must be specified")
    for role, replica in specs.items():
        where = f"spec.pytorchReplicaSpecs[{role}]"
        if role not in ("Master", "Worker"):
            errors.append(f"{where}: Unsupported value: {role!r}: supported values: \"Master\", \"Worker\"")
        containers = (((replica or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            errors.append(f"{where}.template.spec.containers: Required value: must be specified")
        for i, container in enumerate(containers):
            if not container.get("image"):
                errors.append(f"{where}.template.spec.containers[{i}].image: Required value: must be required")
        if containers and not any(c.get("name") == PYTORCH_CONTAINER for c in containers):
            errors.append(f"{where}.template.spec.containers: Required value: There is no container named "
                          f"{PYTORCH_CONTAINER} in {role}")
        replicas = (replica or {}).get("replicas")
        if role == "Master" and replicas != 1:
            errors.append(f"{where}.replicas: Forbidden: must be 1")
        elif role == "Worker" and replicas is not None and replicas < 1:
            errors.append(f"{where}.replicas: Forbidden: must be at least 1")
    _fail("validator.pytorchjob.training-operator.kubeflow.org", errors)


# -- Kubeflow Trainer v2.3: pkg/webhooks/trainjob_webhook.go (the name becomes a JobSet's, whose
#    pods and headless service take it: a DNS-1035 label) and the torch plugin's Validate
#    (pkg/runtime/framework/plugins/torch: the environment variables it sets are reserved).
#    Only these two rules; the rest (the referenced runtime exists, its ML policy) needs the
#    cluster. --
TORCH_RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")


def validate_trainjob(obj: dict[str, Any]) -> None:
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63 or not DNS1035.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1035 label must consist of lower "
                      "case alphanumeric characters or '-', start with an alphabetic character, and end with an "
                      "alphanumeric character")
    trainer = (obj.get("spec") or {}).get("trainer") or {}
    for i, env in enumerate(trainer.get("env") or []):
        if env.get("name") in TORCH_RESERVED_ENV:
            errors.append(f"spec.trainer.env[{i}]: Invalid value: {env.get('name')!r}: must not have reserved "
                          f"envs, invalid envs configured: {list(TORCH_RESERVED_ENV)}")
    _fail("validator.trainjob.trainer.kubeflow.org", errors)
