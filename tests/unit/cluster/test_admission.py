"""The resources Conveyor generates for the Spark Operator, Kubeflow Trainer, the training operator and
KServe's InferenceGraph, against the unmodified upstream CRDs (CEL rules evaluated by a real CEL
engine) and the ported admission webhooks (components/cluster/admission.py): each passes, and for
each rule family a broken copy is refused with the upstream message."""

from __future__ import annotations

import copy

import pytest
import yaml

from components.cluster import admission
from components.common.config import ClusterConfig, SparkConfig
from components.common.errors import AdmissionError, SpecError
from tests.standins.kubernetes.crd_cel import CelReport
from tests.standins.kubernetes.crd_schema import SchemaError, validate_resource
from tests.standins.kubernetes.custom_resources import trial_resource, validate_custom
from tests.support.paths import CHART


def _spark_application():
    from components.stages.ingest.spark_launcher import IngestJob, spark_application

    job = IngestJob(sources=["s3://sources/spam/"], dataset="spam", store="s3://conveyor", settings={}, cleaning={})
    return spark_application("run-1", job, SparkConfig(), ClusterConfig(namespace="team-a"),
                             "registry.example.com/conveyor-component:0.1.0")


def _trainjob(**cluster):
    from components.stages.train.trainjob import train_job

    return train_job("run-1", ["--store", "s3://conveyor", "--dataset", "spam"],
                     ClusterConfig(namespace="team-a", gpus_per_trial=0, **cluster), "img:1")


def _runtime():
    """The chart's namespaced torch TrainingRuntime (values trainer.runtime.enabled)."""
    import helm_python

    rendered = helm_python.Chart.load(str(CHART)).render({"trainer": {"runtime": {"enabled": True}}}, name="conveyor",
                                                          namespace="team-a", is_install=True)
    return yaml.safe_load(next(text for path, text in rendered.items() if path.endswith("trainingruntime.yaml")))


def _experiment(kind: str):
    from components.composition.config import load_config
    from components.stages.search.katib import build_experiment
    from components.stages.search.spec import parse_spec

    cfg = load_config()
    return build_experiment(parse_spec(cfg.search), run_id="run-1", dataset="spam", version="v1", store="s3://c",
                            cluster=cfg.cluster.model_copy(update={"trial_kind": kind}),
                            config=cfg.model_dump(mode="json", exclude_none=True))


def _graph():
    """What an A/B split through KServe's InferenceGraph would be (Conveyor routes A/B with an
    HTTPRoute instead, docs/rollout.md says why): a Splitter over the two predictors."""
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph",
            "metadata": {"name": "spam-ab", "namespace": "team-a"},
            "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": [
                {"name": "stable", "serviceName": "spam", "weight": 50},
                {"name": "candidate", "serviceName": "spam-candidate", "weight": 50}]}}}}


# -- what Conveyor generates passes ----------------------------------------------------------------
def test_generated_resources_pass_their_crds_cel_rules_and_webhooks():
    report = CelReport()
    runtime = _runtime()
    validate_custom(runtime, report=report)
    validate_custom(_spark_application(), report=report)
    validate_custom(_trainjob(), report=report)
    validate_custom(_trainjob(trainer_runtime="conveyor-torch", trainer_runtime_kind="TrainingRuntime"),
                    runtime=runtime, report=report)
    for kind in ("TrainJob", "PyTorchJob"):  # the trial templates, as the resources Katib creates
        validate_custom(_experiment(kind), runtime=runtime, report=report)
        validate_custom(trial_resource(_experiment(kind)), runtime=runtime, report=report)
    validate_custom(_graph(), report=report)
    for mode in ("split", "mirror", "idle"):
        validate_custom(_route(mode), report=report)
    evaluated = {(r.crd, r.message) for r in report.results if r.status == "passed"}
    assert ("TrainJob", "metadata.name must match RFC 1035 DNS label format") in evaluated
    assert ("TrainingRuntime", "Only one of the policy can be configured") in evaluated
    assert ("HTTPRoute", "Must have port for Service reference") in evaluated
    assert not report.by_status("failed") and not report.by_status("error")


def _route(mode="mirror"):
    from components.stages.release.config import RouteConfig
    from components.stages.release.route import build_route

    return build_route("spam", "team-a", RouteConfig(), mode=mode, share=0.3, stable="v1", candidate="v2",
                       salt="v1:v2")


def _split_rule(route):
    return route["spec"]["rules"][-1]


# -- CEL rules (x-kubernetes-validations), evaluated by the CEL engine -------------------------------
@pytest.mark.parametrize("make, mutate, message", [
    (_trainjob, lambda o: o["metadata"].update(name="a" * 64), "must be no more than 63 characters"),
    (_trainjob, lambda o: o["spec"].update(managedBy="someone.else/controller"),
     "ManagedBy must be trainer.kubeflow.org/trainjob-controller or kueue.x-k8s.io/multikueue"),
    (_trainjob, lambda o: o["spec"].update(initializer={"dataset": {"storageUri": "no-scheme"}}),
     "storageUri may be empty, or it must be a valid URI"),
    (_runtime, lambda o: o["spec"]["mlPolicy"].update(mpi={}), "Only one of the policy can be configured"),
    # the release HTTPRoute (Gateway API v1.6.1, standard channel): all of its rules are CEL
    (_route, lambda o: _split_rule(o)["filters"][0]["requestMirror"].update(fraction={"numerator": 1}),
     "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"),
    (_route, lambda o: _split_rule(o)["filters"][0].update(type="RequestHeaderModifier"),
     "filter.requestMirror must be nil if the filter.type is not RequestMirror"),
    (_route, lambda o: _split_rule(o)["backendRefs"][0].pop("port"), "Must have port for Service reference"),
    (_route, lambda o: _split_rule(o)["matches"][0]["path"].update(value="v1/models"),
     "value must be an absolute path and start with '/'"),
    (_route, lambda o: _split_rule(o)["filters"].append({"type": "RequestRedirect", "requestRedirect": {}}),
     "RequestRedirect filter must not be used together with backendRefs"),
    (_route, lambda o: _split_rule(o).update(timeouts={"request": "1s", "backendRequest": "2s"}),
     "backendRequest timeout cannot be longer than request timeout"),
    (_route, lambda o: o["spec"].update(parentRefs=o["spec"]["parentRefs"] * 2),
     "sectionName must be unique when parentRefs includes 2 or more references to the same parent"),
    (_route, lambda o: o["spec"].update(parentRefs=[*o["spec"]["parentRefs"],
                                                    {**o["spec"]["parentRefs"][0], "sectionName": "http"}]),
     "sectionName must be specified when parentRefs includes 2 or more references to the same parent"),
    (_runtime, lambda o: o["spec"]["mlPolicy"]["torch"].update(envInjection={"targets": [
        {"jobName": "node", "containerNames": ["node"]}]}), "containerNames must not include the main node container"),
])
def test_cel_rules_refuse(make, mutate, message):
    obj = make()
    validate_resource(obj)
    mutate(obj)
    with pytest.raises(SchemaError, match=message):
        validate_resource(obj)


def test_transition_rules_apply_on_update_only():
    """`self == oldSelf` rules: a changed immutable field is refused on an update, never on a create."""
    before = _trainjob()
    after = copy.deepcopy(before)
    after["spec"]["runtimeRef"]["name"] = "another-runtime"
    report = CelReport()
    validate_resource(after, report=report)  # a create: no old value, the rule does not apply
    assert any(r.status == "not_applicable" and r.path == "TrainJob.spec.runtimeRef" for r in report.results)
    with pytest.raises(SchemaError, match=r"TrainJob.spec.runtimeRef: Invalid value: \"object\": field is immutable"):
        validate_resource(after, old=before)
    job = trial_resource(_experiment("PyTorchJob"))
    job["spec"]["runPolicy"] = {"schedulingPolicy": {"queue": "a"}}
    moved = copy.deepcopy(job)
    moved["spec"]["runPolicy"]["schedulingPolicy"]["queue"] = "b"
    with pytest.raises(SchemaError, match=r"spec\.runPolicy\.schedulingPolicy\.queue is immutable"):
        validate_resource(moved, old=job)


# -- ported webhooks ----------------------------------------------------------------------------------
def _refused(check, obj, message, **kwargs):
    with pytest.raises(AdmissionError, match=message):
        check(obj, **kwargs)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o["metadata"].update(name="1-ingest"), "invalid SparkApplication name '1-ingest'"),
    (lambda o: o["spec"].update(sparkVersion="2.4.8", driver={**o["spec"]["driver"], "template": {}}),
     "pod template feature requires Spark version 3.0.0 or higher"),
    (lambda o: (o["spec"].update(nodeSelector={"a": "b"}), o["spec"]["driver"].update(nodeSelector={"c": "d"})),
     "node selector cannot be defined at both SparkApplication and Driver/Executor"),
    (lambda o: o["spec"].update(driverIngressOptions=[{"servicePort": 4040, "ingressURLFormat": "a"},
                                                      {"servicePort": 4040, "ingressURLFormat": "b"}]),
     "DriverIngressOptions has duplicate ServicePort: 4040"),
    (lambda o: o["spec"].update(driverIngressOptions=[{"servicePort": 4040}]), "has empty IngressURLFormat"),
])
def test_spark_operator_webhook(mutate, message):
    app = _spark_application()
    admission.validate_sparkapplication(app)
    mutate(app)
    _refused(admission.validate_sparkapplication, app, message)
    unchanged = copy.deepcopy(app)  # an update that leaves spec alone is not re-validated (its name is)
    admission.validate_sparkapplication(unchanged, old=app) if "name" not in message else None


def _patch_job(obj):
    return obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o["spec"]["trainer"]["env"].append({"name": "PET_NODE_RANK", "value": "0"}),
     "must not have reserved envs"),
    (lambda o: o["spec"]["runtimeRef"].update(kind="JobSet"), "unsupported runtime: JobSet.trainer.kubeflow.org"),
    (lambda o: o["spec"]["runtimePatches"][0].update(manager="launcher"), "must be a domain-prefixed path"),
    (lambda o: _patch_job(o).update(name="workers"),
     "must not have replicatedJob 'workers' that doesn't exist in the runtime job template"),
    (lambda o: _patch_job(o)["template"]["spec"]["template"]["spec"]["containers"][0].update(name="sidecar"),
     "must not have container that doesn't exist in the runtime job node"),
    (lambda o: _patch_job(o)["template"]["spec"]["template"]["spec"]["containers"][0].update(
        env=[{"name": "A", "value": "1"}]), "must not have envs for the dataset-initializer, model-initializer, node"),
    (lambda o: o["spec"].update(initializer={"dataset": {"storageUri": "hf://x"}}),
     "must have dataset-initializer job when trainJob is configured with input datasetConfig"),
])
def test_trainer_trainjob_webhook(mutate, message):
    runtime = _runtime()
    job = _trainjob(trainer_runtime="conveyor-torch", trainer_runtime_kind="TrainingRuntime")
    admission.validate_trainjob(job, runtime=runtime)
    mutate(job)
    _refused(admission.validate_trainjob, job, message, runtime=runtime)


def test_trainjob_patches_change_only_while_suspended():
    before = _trainjob()
    after = copy.deepcopy(before)
    _patch_job(after)["template"]["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "other"}
    _refused(admission.validate_trainjob, after, "RuntimePatches can only be modified when the TrainJob is suspended",
             old=before)
    after["spec"]["suspend"] = True
    admission.validate_trainjob(after, old=before)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o["spec"]["template"]["spec"]["replicatedJobs"][0].update(replicas=2), "always must be 1"),
    (lambda o: o["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0].update(name="trainer"), "must contain the required container for the ancestor: trainer"),
])
def test_trainer_runtime_webhook(mutate, message):
    runtime = _runtime()
    admission.validate_training_runtime(runtime)
    mutate(runtime)
    _refused(admission.validate_training_runtime, runtime, message)
    admission.validate_training_runtime(runtime, old=_runtime())  # a TrainingRuntime is checked on create only
    cluster_wide = {**runtime, "kind": "ClusterTrainingRuntime"}
    _refused(admission.validate_training_runtime, cluster_wide, message, old=_runtime())


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(elasticPolicy={"minReplicas": 1}), r"pytorchReplicaSpecs\[Worker\]: Required value"),
    (lambda s: s.update(nprocPerNode="2", elasticPolicy={"nProcPerNode": 2}, pytorchReplicaSpecs={
        **s["pytorchReplicaSpecs"], "Worker": s["pytorchReplicaSpecs"]["Master"]}),
     "elasticPolicy.nProcPerNode: Forbidden: must not be used with spec.nprocPerNode"),
    (lambda s: s.update(runPolicy={"managedBy": "me.example/x"}), "runPolicy.managedBy: Unsupported value"),
    (lambda s: s["pytorchReplicaSpecs"]["Master"].update(replicas=2), r"\[Master\].replicas: Forbidden: must be 1"),
    (lambda s: s["pytorchReplicaSpecs"].update(Chief=s["pytorchReplicaSpecs"]["Master"]),
     "Unsupported value: 'Chief'"),
])
def test_training_operator_pytorchjob_webhook(mutate, message):
    job = trial_resource(_experiment("PyTorchJob"))
    admission.validate_pytorchjob(job)
    mutate(job["spec"])
    _refused(admission.validate_pytorchjob, job, message)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o["metadata"].update(name="Spam_AB"), "a InferenceGraph name must consist of lower case"),
    (lambda o: o["spec"].update(nodes={"first": o["spec"]["nodes"]["root"]}), "root node not found"),
    (lambda o: o["spec"]["nodes"]["root"]["steps"][1].update(name="stable"),
     'contains more than one step with name "stable"'),
    (lambda o: o["spec"]["nodes"]["root"]["steps"][1].pop("serviceName"), "does not specify an inference target"),
    (lambda o: o["spec"]["nodes"]["root"]["steps"][1].update(serviceUrl="http://x"),
     "specifies more than one of nodeName, serviceName, serviceUrl"),
    (lambda o: o["spec"]["nodes"]["root"]["steps"][1].pop("weight"), r"Route\[spam-candidate\] missing the 'Weight'"),
    (lambda o: o["spec"]["nodes"]["root"]["steps"][1].update(weight=60),
     "the sum of traffic weights for all routing targets should be 100"),
])
def test_kserve_inferencegraph_webhook(mutate, message):
    graph = _graph()
    validate_custom(graph)
    mutate(graph)
    _refused(admission.validate_inference_graph, graph, message)


def test_the_launchers_apply_the_webhooks_before_they_send():
    """A manifest a webhook would deny never reaches the API: the launchers' own checks refuse it."""
    from components.stages.ingest.spark_launcher import check_manifest as check_spark
    from components.stages.train.trainjob import check_manifest as check_trainjob

    app = _spark_application()
    app["spec"]["nodeSelector"] = {"a": "b"}
    app["spec"]["driver"]["nodeSelector"] = {"c": "d"}
    with pytest.raises(SpecError, match="node selector cannot be defined at both"):
        check_spark(app)
    job = _trainjob()
    job["spec"]["trainer"]["env"].append({"name": "PET_MASTER_PORT", "value": "1"})
    with pytest.raises(SpecError, match="must not have reserved envs"):
        check_trainjob(job)
