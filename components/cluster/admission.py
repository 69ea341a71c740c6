"""The upstream admission rules that Conveyor's custom resources must pass, ported.

A CRD schema says nothing about these (see tests/upstream_crds/README.md): on a cluster the
validating webhooks of KServe (InferenceService, InferenceGraph), Katib (Experiment), the training
operator (PyTorchJob), Kubeflow Trainer (TrainJob, TrainingRuntime, ClusterTrainingRuntime) and the
Spark Operator (SparkApplication) refuse what breaks them; for an Experiment, Katib's suggestion and
early-stopping services then check the algorithm settings. Each rule names the upstream file it
comes from; messages keep the upstream wording where a user would search for it. Pure functions
over manifest dicts: the deploy step and every launcher check before they send, and the tests'
API stand-in applies them as the webhooks would. Gateway API has no webhook since v1.1: the
HTTPRoute's rules are all in its CRD (CEL), which the tests evaluate.

What needs the cluster's state is applied only when the caller has it: the TrainJob rules that
read the referenced runtime (`runtime=`), and the update rules (`old=`). Not ported: the Spark
Operator's ResourceQuota check (off unless `webhook.resourceQuotaEnforcement.enable`), the
Trainer's torchtune (`tune run`) model checks, and the MPI/XGBoost runtimes' reserved envs
(Conveyor's runtimes are torch).
"""

from __future__ import annotations

import json
import re
from typing import Any

from components.common.errors import AdmissionError
from components.common.grid import double_grid


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
    _fail_service(_suggestion_setting_errors(spec))


def _fail_service(errors: list[str]) -> None:
    if errors:
        raise AdmissionError("Katib's suggestion services refuse the Experiment's settings (on a cluster the "
                             "Suggestion fails and the Experiment with it): " + "; ".join(errors))


# -- Katib's suggestion and early-stopping services, ValidateAlgorithmSettings /
#    ValidateEarlyStoppingSettings, for the algorithms of the shipped katib-config that Conveyor
#    emits: Hyperopt (random, tpe: pkg/suggestion/v1beta1/hyperopt/service.py), Optuna
#    (multivariate-tpe, grid: .../optuna/service.py), goptuna (cmaes: .../goptuna/service.go and
#    converter.go) and medianstop (pkg/earlystopping/v1beta1/medianstop/service.py). The suggestion
#    controller calls them when it creates the Suggestion, after admission. --
_RANDOM_STATE = (int, lambda v: v >= 0, "random_state should be great or equal than zero")
# algorithm -> setting -> (type, check, message), in the services' wording
_SETTING_RULES: dict[str, dict[str, tuple[type, Any, str]]] = {
    "random": {"random_state": _RANDOM_STATE},  # Hyperopt
    "tpe": {"gamma": (float, lambda v: 0 < v < 1, "gamma should be in the range of (0, 1)"),  # Hyperopt
            "prior_weight": (float, lambda v: v > 0, "prior_weight should be great than zero"),
            "n_EI_candidates": (int, lambda v: v > 0, "n_EI_candidates should be great than zero"),
            "random_state": _RANDOM_STATE},
    "multivariate-tpe": {name: (int, lambda v: v >= 0, f"{name} should be greate or equal than zero")  # Optuna
                         for name in ("n_startup_trials", "n_ei_candidates", "random_state")},
    "grid": {"random_state": _RANDOM_STATE},  # Optuna
    "medianstop": {"min_trials_required": (int, lambda v: v > 0, "min_trials_required must be greater than zero (>0)"),
                   "start_step": (int, lambda v: v >= 1, "start_step must be greater or equal than one (>=1)")},
}


def _suggestion_setting_errors(spec: dict[str, Any]) -> list[str]:
    algorithm = spec.get("algorithm") or {}
    name = algorithm.get("algorithmName", "")
    settings = algorithm.get("algorithmSettings") or []
    errors = _setting_errors(name, settings) if name in _SETTING_RULES else []
    if name == "cmaes":  # goptuna
        continuous = [p for p in spec.get("parameters") or [] if p.get("parameterType") in ("double", "int")]
        if len(continuous) < 2:
            errors.append("CMA-ES only supports two or more dimensional continuous search space.")
        for s in settings:
            if s.get("name") == "restart_strategy" and s.get("value") not in ("ipop", "bipop", "none"):
                errors.append(f"invalid restart_strategy: '{s.get('value')}'")
    if name == "grid":
        errors += _grid_errors(spec)
    early = spec.get("earlyStopping") or {}
    if early.get("algorithmName") == "medianstop":
        errors += _setting_errors("medianstop", early.get("algorithmSettings") or [])
    return errors


def _setting_errors(algorithm: str, settings: list[dict[str, Any]]) -> list[str]:
    errors = []
    for s in settings:
        rule = _SETTING_RULES[algorithm].get(s.get("name"))
        if rule is None:
            errors.append(f"unknown setting {s.get('name')} for algorithm {algorithm}")
            continue
        kind, check, message = rule
        try:
            if not check(kind(s.get("value"))):
                errors.append(message)
        except (TypeError, ValueError) as e:
            errors.append(f"failed to validate {s.get('name')}({s.get('value')}): {e}")
    return errors


def _grid_errors(spec: dict[str, Any]) -> list[str]:
    """Optuna's _validate_grid_setting: every double needs a step, and no more trials than points
    (the points counted as pkg/suggestion/v1beta1/internal/search_space.py makes them)."""
    total = 1
    for p in spec.get("parameters") or []:
        space, kind = p.get("feasibleSpace") or {}, p.get("parameterType")
        try:
            if kind == "int":
                total *= len(range(int(space["min"]), int(space["max"]) + 1, int(space.get("step") or 1)))
            elif kind == "double":
                if not space.get("step"):
                    return [f"failed to validate parameters: Param {p.get('name')} step is nil; For discrete "
                            "search space, all parameters must include step"]
                total *= len(double_grid(float(space["min"]), float(space["max"]), float(space["step"])))
            else:
                total *= len(space.get("list") or [])
        except (KeyError, TypeError, ValueError) as e:
            return [f"failed to validate parameters: {e}"]
    if (spec.get("maxTrialCount") or 0) > total:
        return [f"Max Trial Count: {spec['maxTrialCount']} > all possible search combinations: {total}"]
    return []


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


# -- Training operator v1.9.4: pkg/webhooks/pytorch/pytorchjob_webhook.go and
#    pkg/common/util/webhooks.go (ValidateRunPolicy). Its update check passes the new object as the
#    old one, so the managedBy immutability it means to check never fires; not ported either. --
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PYTORCH_CONTAINER = "pytorch"  # PyTorchJobDefaultContainerName
PYTORCH_MANAGERS = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")


def validate_pytorchjob(obj: dict[str, Any]) -> None:
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63 or not DNS1035.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: should match a DNS-1035 label")
    spec = obj.get("spec") or {}
    manager = (spec.get("runPolicy") or {}).get("managedBy")
    if manager is not None and manager not in PYTORCH_MANAGERS:
        errors.append(f"spec.runPolicy.managedBy: Unsupported value: {manager!r}: supported values: "
                      + ", ".join(f'"{m}"' for m in PYTORCH_MANAGERS))
    specs = spec.get("pytorchReplicaSpecs") or {}
    if spec.get("elasticPolicy") is not None:
        if "Worker" not in specs:
            errors.append("spec.pytorchReplicaSpecs[Worker]: Required value: must be configured if elastic policy "
                          "is used")
        if spec["elasticPolicy"].get("nProcPerNode") is not None and spec.get("nprocPerNode") is not None:
            errors.append("spec.elasticPolicy.nProcPerNode: Forbidden: must not be used with spec.nprocPerNode")
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


# -- Kubeflow Trainer v2.3.0: pkg/webhooks/trainjob_webhook.go hands a TrainJob to its runtime
#    (pkg/runtime/core/trainingruntime.go, clustertrainingruntime.go: RuntimeRefToRuntimeRegistryKey),
#    whose plugins validate it: pkg/runtime/framework/plugins/torch (the PET_* variables the torch
#    plugin sets are reserved) and .../plugins/jobset (initializers need their jobs; runtime patches:
#    a domain-prefixed manager, only jobs and containers the runtime has, no env on the reserved
#    containers, changes only while suspended). The name becomes a JobSet's, whose pods and headless
#    service take it: a DNS-1035 label (also a CEL rule of the CRD). --
TRAINER_GROUP = "trainer.kubeflow.org"
RUNTIME_KINDS = ("TrainingRuntime", "ClusterTrainingRuntime")
TORCH_RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
NODE, DATASET_INITIALIZER, MODEL_INITIALIZER = "node", "dataset-initializer", "model-initializer"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"   # constants.LabelTrainJobAncestor
ANCESTOR_CONTAINERS = {"trainer": NODE, DATASET_INITIALIZER: DATASET_INITIALIZER, MODEL_INITIALIZER: MODEL_INITIALIZER}
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")    # k8s.io/apimachinery validation httpPathFmt


def domain_prefixed_path_errors(where: str, value: str) -> list[str]:
    """k8s.io/apimachinery/pkg/util/validation IsDomainPrefixedPath."""
    if not value:
        return [f"{where}: Required value"]
    host, sep, path = value.partition("/")
    if not sep or not host or not path:
        return [f"{where}: Invalid value: {value!r}: must be a domain-prefixed path (such as \"acme.io/foo\")"]
    errors = []
    if len(host) > 253 or not DNS1123_SUBDOMAIN.match(host):
        errors.append(f"{where}: Invalid value: {host!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                      "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    if not HTTP_PATH.match(path):
        errors.append(f"{where}: Invalid value: {path!r}: Invalid path")
    return errors


def _runtime_jobs(runtime: dict[str, Any]) -> dict[str, set[str]]:
    """Replicated job name -> its init container and container names."""
    jobs = (((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
    out = {}
    for job in jobs:
        pod = ((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
        out[job.get("name", "")] = {c.get("name") for c in (pod.get("initContainers") or []) + (pod.get("containers")
                                                                                                or [])}
    return out


def validate_trainjob(obj: dict[str, Any], old: dict[str, Any] | None = None,
                      runtime: dict[str, Any] | None = None) -> None:
    """The TrainJob webhook with the runtime's plugins. `runtime`: the (Cluster)TrainingRuntime it
    references, when the caller has it (the runtime's own job and container names); `old`: the
    object an update replaces."""
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63 or not DNS1035.match(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1035 label must consist of lower "
                      "case alphanumeric characters or '-', start with an alphabetic character, and end with an "
                      "alphanumeric character")
    spec = obj.get("spec") or {}
    ref = spec.get("runtimeRef") or {}
    group, kind = ref.get("apiGroup", TRAINER_GROUP), ref.get("kind", "ClusterTrainingRuntime")
    if group != TRAINER_GROUP or kind not in RUNTIME_KINDS:
        _fail("validator.trainjob.trainer.kubeflow.org", [f"unsupported runtime: {kind}.{group}"])
    torch = runtime is None or "torch" in (((runtime.get("spec") or {}).get("mlPolicy")) or {})
    trainer = spec.get("trainer") or {}
    for i, env in enumerate(trainer.get("env") or []):
        if torch and env.get("name") in TORCH_RESERVED_ENV:
            errors.append(f"spec.trainer.env[{i}]: Invalid value: {env.get('name')!r}: must not have reserved "
                          f"envs, invalid envs configured: {list(TORCH_RESERVED_ENV)}")
    patches = spec.get("runtimePatches") or []
    for i, patch in enumerate(patches):
        errors += domain_prefixed_path_errors(f"spec.runtimePatches[{i}].manager", patch.get("manager", ""))
    if runtime is not None:
        errors += _runtime_patch_errors(spec, _runtime_jobs(runtime))
    if old is not None:
        before = (old.get("spec") or {})
        if _without_times(before.get("runtimePatches")) != _without_times(patches) and not (
                before.get("suspend") is True or spec.get("suspend") is True):
            errors.append("spec.runtimePatches: Forbidden: RuntimePatches can only be modified when the TrainJob "
                          "is suspended")
    _fail("validator.trainjob.trainer.kubeflow.org", errors)


def _without_times(patches: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "time"} for p in patches or []]


def _runtime_patch_errors(spec: dict[str, Any], jobs: dict[str, set[str]]) -> list[str]:
    errors = []
    initializer = spec.get("initializer") or {}
    for part, job in (("dataset", DATASET_INITIALIZER), ("model", MODEL_INITIALIZER)):
        if initializer.get(part) is None:
            continue
        if job not in jobs:
            errors.append(f"spec.runtimeRef: Invalid value: must have {job} job when trainJob is configured with "
                          f"input {part}Config")
        elif job not in jobs[job]:
            errors.append(f"spec.runtimeRef: Invalid value: must have container with name - {job} in the {job} job")
    for i, patch in enumerate(spec.get("runtimePatches") or []):
        where = f"spec.runtimePatches[{i}]"
        runtime_spec = (patch.get("trainingRuntimeSpec") or {})
        replicated = (((runtime_spec.get("template") or {}).get("spec") or {}).get("replicatedJobs")) or []
        for job in replicated:
            job_name = job.get("name", "")
            if job_name not in jobs:
                errors.append(f"{where}: Invalid value: must not have replicatedJob {job_name!r} that doesn't exist "
                              "in the runtime job template")
                continue
            pod = ((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
            for c in pod.get("initContainers") or []:
                if c.get("name") not in jobs[job_name]:
                    errors.append(f"{where}: Invalid value: must not have initContainer that doesn't exist in the "
                                  f"runtime job {job_name}")
            for c in pod.get("containers") or []:
                if c.get("name") not in jobs[job_name]:
                    errors.append(f"{where}: Invalid value: must not have container that doesn't exist in the "
                                  f"runtime job {job_name}")
                elif c.get("env") and c.get("name") in (DATASET_INITIALIZER, MODEL_INITIALIZER, NODE):
                    errors.append(f"{where}: Invalid value: must not have envs for the {DATASET_INITIALIZER}, "
                                  f"{MODEL_INITIALIZER}, {NODE} containers")
    return errors


# -- Kubeflow Trainer v2.3.0: pkg/webhooks/trainingruntime_webhook.go (on create) and
#    clustertrainingruntime_webhook.go (create and update): a replicated job labelled as an ancestor
#    step runs one replica and has that step's container. --
def validate_training_runtime(obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    if obj.get("kind") == "TrainingRuntime" and old is not None:
        return  # TrainingRuntime: its validator checks creates only
    errors = []
    jobs = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
    for i, job in enumerate(jobs):
        where = f"spec.template.spec.replicatedJobs[{i}]"
        ancestor = (((job.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(ANCESTOR_LABEL)
        if ancestor not in ANCESTOR_CONTAINERS:
            continue
        if job.get("replicas", 1) != 1:
            errors.append(f"{where}.replicas: Invalid value: {job.get('replicas')}: always must be 1")
        pod = ((((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
        if not any(c.get("name") == ANCESTOR_CONTAINERS[ancestor] for c in pod.get("containers") or []):
            errors.append(f"{where}.template.spec.template.spec.containers: Invalid value: must contain the required "
                          f"container for the ancestor: {ancestor}")
    webhook = "validator.clustertrainingruntime" if obj.get("kind") == "ClusterTrainingRuntime" else \
        "validator.trainingruntime"
    _fail(f"{webhook}.trainer.kubeflow.org", errors)


# -- Spark Operator v2.4.0: internal/webhook/sparkapplication_validator.go (create; update when
#    spec changed). The ResourceQuota check runs only with webhook.resourceQuotaEnforcement.enable
#    (chart default false) and is not ported. --
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.lstrip("v").split("-")[0])[:3])


def validate_sparkapplication(obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    errors: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    if len(name) > 63 or not DNS1035.match(name):
        _fail("validate-sparkapplication.sparkoperator.k8s.io",
              [f"invalid SparkApplication name {name!r}: a DNS-1035 label must consist of lower case alphanumeric "
               "characters or '-', start with an alphabetic character, and end with an alphanumeric character"])
    spec = obj.get("spec") or {}
    if old is not None and (old.get("spec") or {}) == spec:
        return
    driver, executor = spec.get("driver") or {}, spec.get("executor") or {}
    if (driver.get("template") is not None or executor.get("template") is not None) and \
            _version_tuple(spec.get("sparkVersion", "0")) < (3, 0, 0):
        errors.append("pod template feature requires Spark version 3.0.0 or higher")
    if spec.get("nodeSelector") is not None and (driver.get("nodeSelector") is not None
                                                 or executor.get("nodeSelector") is not None):
        errors.append("node selector cannot be defined at both SparkApplication and Driver/Executor")
    ports, formats = set(), set()
    for option in spec.get("driverIngressOptions") or []:
        port, url_format = option.get("servicePort"), option.get("ingressURLFormat", "")
        if port is None:
            errors.append("DriverIngressOptions has nill ServicePort")
            break
        if port in ports:
            errors.append(f"DriverIngressOptions has duplicate ServicePort: {port}")
            break
        ports.add(port)
        if not url_format:
            errors.append("DriverIngressOptions has empty IngressURLFormat")
            break
        if url_format in formats:
            errors.append(f"DriverIngressOptions has duplicate IngressURLFormat: {url_format}")
            break
        formats.add(url_format)
    _fail("validate-sparkapplication.sparkoperator.k8s.io", errors[:1])  # the validator stops at the first


# -- KServe: pkg/apis/serving/v1alpha1/inference_graph_validation.go (create and update) --
GRAPH_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # GraphNameFmt


def validate_inference_graph(obj: dict[str, Any]) -> None:
    name = (obj.get("metadata") or {}).get("name", "")
    nodes = (obj.get("spec") or {}).get("nodes") or {}

    def fail(message: str) -> None:
        _fail("inferencegraph.kserve-webhook-server.validator", [message])

    if not GRAPH_NAME.match(name):
        fail(f"The InferenceGraph \"{name}\" is invalid: a InferenceGraph name must consist of lower case "
             "alphanumeric characters or '-', and must start with alphabetical character. (e.g. \"my-name\" or "
             f"\"abc-123\", regex used for validation is '{GRAPH_NAME.pattern[1:-1]}')")
    if "root" not in nodes:
        fail("root node not found, InferenceGraph needs a node with name 'root' as the root node of the graph")
    for node_name, node in nodes.items():
        seen: set[str] = set()
        for step in node.get("steps") or []:
            step_name = step.get("name", "")
            if step_name and step_name in seen:
                fail(f"Node \"{node_name}\" of InferenceGraph \"{name}\" contains more than one step with name "
                     f"\"{step_name}\"")
            seen.add(step_name)
    for node_name, node in nodes.items():
        for i, step in enumerate(node.get("steps") or []):
            targets = sum(1 for k in ("nodeName", "serviceName", "serviceUrl") if step.get(k))
            if targets == 0:
                fail(f"Step {i} (\"{step.get('name', '')}\") in node \"{node_name}\" of InferenceGraph \"{name}\" "
                     "does not specify an inference target")
            if targets != 1:
                fail(f"Step {i} (\"{step.get('name', '')}\") in node \"{node_name}\" of InferenceGraph \"{name}\" "
                     "specifies more than one of nodeName, serviceName, serviceUrl")
    for node_name, node in nodes.items():
        if node.get("routerType") != "Splitter":
            continue
        total = 0
        for step in node.get("steps") or []:
            if step.get("weight") is None:
                fail(f"InferenceGraph[{name}] Node[{node_name}] Route[{step.get('serviceName', '')}] missing the "
                     "'Weight'")
            total += step["weight"]
        if total != 100:
            fail(f"InferenceGraph[{name}] Node[{node_name}] splitter node: the sum of traffic weights for all routing "
                 "targets should be 100")
