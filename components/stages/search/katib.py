"""Cluster search backend, part 1: the Katib Experiment, built from the Katib SDK model classes.

Everything the SDK would accept silently is checked by `parse_spec` first; the objects here are
built from the SDK's (and the Kubernetes client's) generated models, which reject unknown fields,
and serialized with `ApiClient.sanitize_for_serialization` into a camelCase manifest.
"""

from __future__ import annotations

import re
from typing import Any

import kubeflow.katib as katib_models
import kubernetes.client as k8s_models
from kubeflow.katib import (
    V1beta1AlgorithmSetting,
    V1beta1AlgorithmSpec,
    V1beta1CollectorSpec,
    V1beta1EarlyStoppingSetting,
    V1beta1EarlyStoppingSpec,
    V1beta1Experiment,
    V1beta1ExperimentSpec,
    V1beta1FeasibleSpace,
    V1beta1MetricsCollectorSpec,
    V1beta1MetricStrategy,
    V1beta1ObjectiveSpec,
    V1beta1ParameterSpec,
    V1beta1TrialParameterSpec,
    V1beta1TrialTemplate,
)
from kubernetes.client import (
    ApiClient,
    V1Capabilities,
    V1Container,
    V1EnvFromSource,
    V1EnvVar,
    V1Job,
    V1JobSpec,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1PodSpec,
    V1PodTemplateSpec,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecretEnvSource,
    V1SecurityContext,
    V1Toleration,
)

from components.cluster.admission import validate_experiment as katib_webhook
from components.cluster.images import TRAINING_IMAGE
from components.cluster.sdkvalidate import ManifestError, model_lookup, validate, validate_pydantic
from components.common.argcodec import encode_object, encode_value, is_shell_safe
from components.common.config import ClusterConfig
from components.common.errors import SpecError
from components.common.hashing import sha256_of_value
from components.stages.search.spec import SearchSpec
from components.stages.train import trainjob
from components.stages.train.config import TrainingConfig
from components.stages.train.launch import ENTRYPOINT

API_VERSION = "kubeflow.org/v1beta1"
TRIAL_SECTIONS = ("split", "features", "train")  # what components.stages.train.entrypoint reads
# The container Katib's metrics collector watches. The training operator's PyTorchJob webhook
# requires each replica's container to be named "pytorch" (PyTorchJobDefaultContainerName); the
# Trainer's torch runtime names its container "node".
PRIMARY_CONTAINER = {"Job": "training", "PyTorchJob": "pytorch", "TrainJob": trainjob.NODE}
# Of a multi-pod trial, the pod whose container prints rank 0's metric lines.
PRIMARY_POD_LABELS = {"TrainJob": trainjob.PRIMARY_POD_LABELS,
                      "PyTorchJob": {"training.kubeflow.org/job-role": "master"}}
SPEC_HASH_ANNOTATION = "conveyor.dev/spec-sha256"
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
PYTORCHJOB_SUCCESS = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
SUCCESS = {"Job": JOB_SUCCESS, "PyTorchJob": PYTORCHJOB_SUCCESS, "TrainJob": trainjob.TRIAL_SUCCESS}


def katib_parameter_name(name: str) -> str:
    """Config field names (`features.num_buckets`) as Katib parameter names (`features-num_buckets`)."""
    return name.replace(".", "-")


def experiment_name(run_id: str, spec_hash: str) -> str:
    """Deterministic and short: a retried launch finds the same experiment instead of a conflict.
    Starts with a letter: trials take the name, and a TrainJob's must be a DNS-1035 label."""
    base = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")[:28].strip("-") or "run"
    return f"{base if base[0].isalpha() else 'r' + base[:27]}-{spec_hash[:8]}"


def spec_hash(spec: SearchSpec, dataset: str, version: str, image: str,
              trial_cfg: dict[str, Any] | None = None) -> str:
    return sha256_of_value({"spec": spec.model_dump(mode="json"), "dataset": dataset, "version": version,
                            "image": image, "config": trial_cfg or {}})


def _feasible_space(p):
    if p.type in ("double", "int"):
        fmt = (lambda x: str(int(x))) if p.type == "int" else (lambda x: repr(float(x)))
        return V1beta1FeasibleSpace(min=fmt(p.min), max=fmt(p.max),
                                    step=None if p.step is None else fmt(p.step),
                                    distribution="logUniform" if p.log else "uniform")
    # Build the list directly: katib.search.categorical() puts it in `distribution` (SDK bug).
    # Katib values are strings and land in the trial's argv: shell-safe words that the trial's
    # `--set name=value` decodes back ([1, 2] travels as %5B1,2%5D; 64, cnn and null as they are).
    return V1beta1FeasibleSpace(list=[encode_value(v) for v in p.values])


def _sample_values(p) -> list[str]:
    """Values Katib may substitute for a parameter: every list entry; the bounds and step of a range
    (a suggestion's number is formatted like them: digits, sign, point, exponent)."""
    space = _feasible_space(p)
    return list(space.list) if space.list else [v for v in (space.min, space.max, space.step) if v is not None]


def check_shell_safe(args: list[str], values: dict[str, list[str]]) -> None:
    """Refuse a trial command with an argument that a shell would change (see argcodec), with every
    `${trialParameters.x}` replaced by each value Katib may give it, and the trial's name."""
    for arg in args:
        candidates = [arg]
        for name, options in {**values, "trialName": ["trial-name-abc12345"]}.items():
            placeholder = f"${{trialParameters.{name}}}"
            candidates = [c.replace(placeholder, v) for c in candidates for v in options] \
                if placeholder in arg else candidates
        for candidate in candidates:
            if not is_shell_safe(candidate):
                raise SpecError(f"trial argument {candidate!r} would not survive Katib's metrics collector "
                                "(it joins the command with spaces and runs `sh -c`): use letters, digits and "
                                "_ . / : = , + @ % - only")


def trial_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """What a trial needs of the run's config: the sections training reads, with every value the
    run set (its fixed parameters), so a trial never falls back to a default file in the image."""
    cfg = TrainingConfig.of(dict(config or {}), origin="run config")
    return {section: getattr(cfg, section).model_dump(mode="json") for section in TRIAL_SECTIONS}


def build_experiment(spec: SearchSpec, *, run_id: str, dataset: str, version: str, store: str,
                     cluster: ClusterConfig, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Experiment manifest (a dict ready for the Kubernetes API or `kubectl apply`).

    `config` is the run's config (a dict as the pipeline passes it); each trial gets its training
    sections inline (`--config-b64`) and the sampled parameters on top (`--set`). Every argument
    is a shell-safe word (components/common/argcodec.py): Katib's metrics collector joins the
    command with spaces and runs it with `sh -c`."""
    image = cluster.image or TRAINING_IMAGE
    fixed = trial_config(config)
    digest = spec_hash(spec, dataset, version, image, fixed)
    name = experiment_name(run_id, digest)
    params = [V1beta1ParameterSpec(name=katib_parameter_name(p.name), parameter_type=p.type,
                                   feasible_space=_feasible_space(p)) for p in spec.parameters]
    entry_args = _trial_arguments(spec, store, dataset, version, image, fixed)
    algorithm_settings = _algorithm_settings(spec)
    kind = cluster.trial_kind
    # Katib's grid service refuses more trials than grid points; the local backend runs each point once
    trials = min(spec.max_trials, spec.grid_size()) if spec.algorithm == "grid" else spec.max_trials
    experiment = V1beta1Experiment(
        api_version=API_VERSION, kind="Experiment",
        metadata=V1ObjectMeta(name=name, namespace=cluster.namespace,
                              labels={"app.kubernetes.io/part-of": "conveyor", "conveyor.dev/run-id": run_id[:63]},
                              annotations={SPEC_HASH_ANNOTATION: digest}),
        spec=V1beta1ExperimentSpec(
            objective=_objective(spec),
            algorithm=V1beta1AlgorithmSpec(algorithm_name=spec.algorithm, algorithm_settings=algorithm_settings),
            early_stopping=_early_stopping(spec),
            parallel_trial_count=min(spec.parallel_trials, trials), max_trial_count=trials,
            # Katib refuses maxFailedTrialCount > maxTrialCount; no more trials than that can fail anyway
            max_failed_trial_count=min(spec.max_failed_trials, trials),
            metrics_collector_spec=V1beta1MetricsCollectorSpec(collector=V1beta1CollectorSpec(kind="StdOut")),
            parameters=params,
            resume_policy="Never",
            trial_template=V1beta1TrialTemplate(
                primary_container_name=PRIMARY_CONTAINER[kind], primary_pod_labels=PRIMARY_POD_LABELS.get(kind),
                trial_parameters=_trial_parameters(spec),
                trial_spec=_trial_spec(kind, image, entry_args, cluster),
                success_condition=SUCCESS[kind],
                failure_condition=JOB_FAILURE,
                retain=False),
        ),
    )
    return ApiClient().sanitize_for_serialization(experiment)


def _algorithm_settings(spec: SearchSpec) -> list[V1beta1AlgorithmSetting]:
    """The settings each algorithm's suggestion service in Katib's shipped katib-config accepts: Optuna
    (grid, multivariate-tpe) refuses names it does not know, as Hyperopt (random, tpe) does, and only
    Optuna takes the start-up trials; Hyperopt's TPE starts with one batch of random trials."""
    if spec.algorithm == "grid":
        return []
    settings = [V1beta1AlgorithmSetting(name="random_state", value=str(spec.seed))]
    if spec.algorithm == "multivariate-tpe":
        settings.append(V1beta1AlgorithmSetting(name="n_startup_trials", value=str(spec.startup_trials())))
    return settings


def _objective(spec: SearchSpec) -> V1beta1ObjectiveSpec:
    """What Katib optimizes (with the other metrics the trials print, collected beside it)."""
    name = spec.objective.name
    return V1beta1ObjectiveSpec(
        type=spec.objective.goal, goal=spec.objective.target, objective_metric_name=name,
        additional_metric_names=[m for m in ("loss", "macro_f1", "accuracy") if m != name],
        metric_strategies=[V1beta1MetricStrategy(name=name,
                                                 value="max" if spec.objective.goal == "maximize" else "min")])


def _early_stopping(spec: SearchSpec) -> V1beta1EarlyStoppingSpec | None:
    """Katib's median stopping rule, when the spec asks for it (Katib has no Hyperband early stopping)."""
    if spec.early_stopping.algorithm != "medianstop":
        return None
    return V1beta1EarlyStoppingSpec(algorithm_name="medianstop", algorithm_settings=[
        V1beta1EarlyStoppingSetting(name="min_trials_required", value=str(spec.early_stopping.min_trials_required)),
        V1beta1EarlyStoppingSetting(name="start_step", value=str(spec.early_stopping.start_step)),
    ])


def _trial_parameters(spec: SearchSpec) -> list[V1beta1TrialParameterSpec]:
    """Each searched parameter as the trial template's placeholder, and the trial's own name (its
    run id, under which it resumes its checkpoint)."""
    return [*(V1beta1TrialParameterSpec(name=katib_parameter_name(p.name), reference=katib_parameter_name(p.name),
                                        description=f"config field {p.name}") for p in spec.parameters),
            V1beta1TrialParameterSpec(name="trialName", reference="${trialSpec.Name}",
                                      description="run id of the trial (resumes its checkpoint)")]


def _trial_arguments(spec: SearchSpec, store: str, dataset: str, version: str, image: str,
                     fixed: dict[str, Any]) -> list[str]:
    """The training entrypoint's arguments for one trial: the fixed sections inline, each sampled
    parameter as a `--set` of Katib's placeholder; checked shell-safe for every value it can take."""
    args = ["--store", store, "--dataset", dataset,
            "--version", version, "--run-id", "${trialParameters.trialName}", "--image", image,
            "--config-b64", encode_object(fixed)]
    if spec.objective.cv_folds:
        args += ["--cv-folds", str(spec.objective.cv_folds)]
    for p in spec.parameters:
        args += ["--set", f"{p.name}=${{trialParameters.{katib_parameter_name(p.name)}}}"]
    check_shell_safe(args, {katib_parameter_name(p.name): _sample_values(p) for p in spec.parameters})
    return args


def _pod_template(image: str, command: list[str], cluster: ClusterConfig, restart: str, container_name: str):
    limits = {"cpu": cluster.cpu, "memory": cluster.memory}
    if cluster.gpus_per_trial:
        limits[cluster.gpu_resource] = str(cluster.gpus_per_trial)
    container = V1Container(
        name=container_name, image=image, command=command,
        env=[V1EnvVar(name="PYTHONUNBUFFERED", value="1")],
        env_from=[V1EnvFromSource(secret_ref=V1SecretEnvSource(name=cluster.s3_secret))],
        resources=V1ResourceRequirements(requests={"cpu": cluster.cpu, "memory": cluster.memory}, limits=limits),
        security_context=V1SecurityContext(allow_privilege_escalation=False, run_as_non_root=True,
                                           capabilities=V1Capabilities(drop=["ALL"]),
                                           seccomp_profile=V1SeccompProfile(type="RuntimeDefault")))
    template = V1PodTemplateSpec(
        metadata=V1ObjectMeta(annotations={"sidecar.istio.io/inject": "false"},
                              labels={"app.kubernetes.io/part-of": "conveyor"}),
        spec=V1PodSpec(containers=[container], restart_policy=restart, node_selector=cluster.node_selector or None,
                       tolerations=[V1Toleration(**t) for t in cluster.tolerations] or None,
                       security_context=V1PodSecurityContext(run_as_non_root=True, run_as_user=10001,
                                                             seccomp_profile=V1SeccompProfile(type="RuntimeDefault"))))
    return template


def _trial_spec(kind: str, image: str, entry_args: list[str], cluster: ClusterConfig) -> dict[str, Any]:
    if kind == "Job":
        # backoffLimit 0: a failed trial is a failed trial (Katib counts it), not a silent retry.
        command = ["python", "-m", ENTRYPOINT, *entry_args]
        job = V1Job(api_version="batch/v1", kind="Job",
                    spec=V1JobSpec(backoff_limit=0, template=_pod_template(image, command, cluster, "Never",
                                                                           PRIMARY_CONTAINER[kind])))
        return ApiClient().sanitize_for_serialization(job)
    if kind == "TrainJob":
        return {"apiVersion": f"{trainjob.GROUP}/{trainjob.VERSION}", "kind": "TrainJob",
                "spec": trainjob.train_job_spec(trainjob.torchrun_entry(entry_args), cluster, image)}
    # The legacy training operator: one Master and nodes - 1 Workers, each running torchrun with
    # `nprocPerNode` processes (the operator gives torchrun its PET_* topology, as Trainer does).
    template = ApiClient().sanitize_for_serialization(
        _pod_template(image, trainjob.torchrun_entry(entry_args), cluster, "Never", PRIMARY_CONTAINER[kind]))
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if cluster.nodes > 1:
        replicas["Worker"] = {"replicas": cluster.nodes - 1, "restartPolicy": "Never", "template": template}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "spec": {"nprocPerNode": str(cluster.procs_per_node), "pytorchReplicaSpecs": replicas}}


def validate_experiment(manifest: dict[str, Any]) -> None:
    """Every field must exist in the Katib SDK models; the trial spec in the Kubernetes models.

    Raises SpecError naming the path of the first unknown or mistyped field.
    """
    lookup = model_lookup(katib_models, k8s_models)

    def trial_spec(value: Any, path: str) -> None:
        if not path.endswith(".trialSpec"):
            return
        kind = value.get("kind")
        if kind == "Job":
            validate(value, "V1Job", lookup, path)
        elif kind == "PyTorchJob":
            for role, replica in value.get("spec", {}).get("pytorchReplicaSpecs", {}).items():
                validate(replica.get("template"), "V1PodTemplateSpec", lookup,
                         f"{path}.spec.pytorchReplicaSpecs.{role}.template")
        elif kind == "TrainJob":
            # lazy: the Trainer's models, only for this trial kind
            from kubeflow_trainer_api.models import TrainerV1alpha1TrainJobSpec

            validate_pydantic(value.get("spec"), TrainerV1alpha1TrainJobSpec, f"{path}.spec")
        else:
            raise ManifestError(f"{path}.kind: expected Job, TrainJob or PyTorchJob, got {kind!r}")

    try:
        validate(manifest, "V1beta1Experiment", lookup, object_hook=trial_spec)
    except ManifestError as exc:
        raise SpecError(f"Katib Experiment: {exc}") from exc
    for field_name in ("apiVersion", "kind", "metadata", "spec"):
        if field_name not in manifest:
            raise SpecError(f"Katib Experiment: missing {field_name}")

    katib_webhook(manifest)  # Katib's own validating webhook, and the training operator's for PyTorchJob
