"""manifests/ checked offline by real engines: every object against the Kubernetes OpenAPI schemas
of two versions in strict mode (kubernetes-validate), every verb granted listed (no wildcards),
every pod template against the "restricted" Pod Security profile, no secret values, and the
embedded monitor config loads as a Conveyor config."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.standins.kubernetes.rules import KUBE_VERSIONS
from tests.support.paths import ROOT

MANIFESTS = ROOT / "manifests"


def _objects() -> list[dict]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return objects


def test_kustomization_lists_every_file():
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


CUSTOM_GROUPS = ("serving.kserve.io/", "monitoring.coreos.com/", "trainer.kubeflow.org/", "gateway.networking.k8s.io/",
                 "kubeflow.org/", "sparkoperator.k8s.io/", "pipelines.kubeflow.org/")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_core_object_validates_strictly(version):
    core = [o for o in _objects() if not o["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {o["kind"] for o in core} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret",
                                         "NetworkPolicy", "ConfigMap", "CronJob"}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_custom_resources_validate_structurally_and_match_the_generators():
    from components.cluster.isvc import build_inference_service
    from components.composition.config import load_config
    from components.stages.monitor.alerts import prometheus_rule
    from tests.standins.kubernetes.custom_resources import validate_custom

    custom = [o for o in _objects() if o["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert {o["kind"] for o in custom} == {"ServingRuntime", "InferenceService", "PodMonitor", "PrometheusRule"}
    for obj in custom:
        validate_custom(obj)
    objects = {o["kind"]: o for o in _objects()}
    cfg = load_config()
    assert objects["InferenceService"] == build_inference_service(cfg.deploy, cfg.model_name, "CHAMPION_VERSION")
    assert objects["PrometheusRule"] == prometheus_rule(cfg.model_name, cfg.monitor, cfg.canary, cfg.deploy.namespace)
    runtime = objects["ServingRuntime"]["spec"]
    isvc_model = objects["InferenceService"]["spec"]["predictor"]["model"]
    assert isvc_model["runtime"] == objects["ServingRuntime"]["metadata"]["name"]
    assert isvc_model["modelFormat"]["name"] in {f["name"] for f in runtime["supportedModelFormats"]}
    from components.cluster.images import PREDICTOR_IMAGE

    assert runtime["containers"][0]["image"] == PREDICTOR_IMAGE
    assert runtime["containers"][0]["args"][0] == "/mnt/models"  # `conveyor serve` loads the version folder
    monitor = objects["PodMonitor"]["spec"]["podMetricsEndpoints"][0]  # scrapes the runtime's port
    assert monitor["port"] == runtime["containers"][0]["ports"][0]["name"] and monitor["path"] == "/metrics"


@pytest.mark.parametrize("kind, path, typo", [
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0), "expression"),
    ("PodMonitor", ("spec", "podMetricsEndpoints", 0), "paths"),
    ("ServingRuntime", ("spec",), "supportedModelFormat"),
    ("InferenceService", ("spec", "predictor"), "minReplica"),
])
def test_custom_resource_checks_catch_a_typo(kind, path, typo):
    from tests.standins.kubernetes.custom_resources import validate_custom

    obj = next(o for o in _objects() if o["kind"] == kind)
    node = obj
    for part in path:
        node = node[part]
    node[typo] = "x"
    with pytest.raises(Exception, match=typo):
        validate_custom(obj)


def test_strict_validation_catches_a_typo():
    broken = next(o for o in _objects() if o["kind"] == "CronJob")
    broken["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)


def test_rbac_grants_are_listed_and_minimal():
    roles = {o["metadata"]["name"]: o for o in _objects() if o["kind"] in ("Role", "ClusterRole")}
    assert all(o["kind"] == "Role" for o in roles.values()), "namespaced roles only"
    granted = {}
    for name, role in roles.items():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{name}: wildcard in {field}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault(name, set()).update(f"{group or 'core'}/{resource}:{v}" for v in rule["verbs"])
    assert granted["conveyor-canary"] == {
        "serving.kserve.io/inferenceservices:get", "serving.kserve.io/inferenceservices:list",
        "serving.kserve.io/inferenceservices:watch", "serving.kserve.io/inferenceservices:patch",
        "serving.kserve.io/inferenceservices:delete", "gateway.networking.k8s.io/httproutes:get",
        "gateway.networking.k8s.io/httproutes:patch", "core/events:create"}
    pipeline = granted["conveyor-pipeline"]
    assert {"kubeflow.org/experiments:create", "kubeflow.org/experiments:delete",
            "serving.kserve.io/inferenceservices:patch", "core/pods/log:get"} <= pipeline
    assert not any(g.startswith("core/secrets") for g in pipeline)  # secrets come in as env, not API reads
    bound = {(o["roleRef"]["name"], o["subjects"][0]["name"]) for o in _objects() if o["kind"] == "RoleBinding"}
    assert bound == {("conveyor-pipeline", "conveyor-pipeline"), ("conveyor-canary", "conveyor-canary")}
    accounts = {o["metadata"]["name"]: o for o in _objects() if o["kind"] == "ServiceAccount"}
    assert accounts["conveyor-predictor"]["automountServiceAccountToken"] is False  # the predictor gets nothing


def _pod_specs():
    for obj in _objects():
        if obj["kind"] == "CronJob":
            yield obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def test_every_pod_meets_the_restricted_profile():
    specs = list(_pod_specs())
    runtime = next(o for o in _objects() if o["kind"] == "ServingRuntime")
    # KServe builds the predictor pod from the runtime's containers: their securityContext is the pod's
    specs.append(("conveyor-predictor (ServingRuntime)", {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "seccompProfile": runtime["spec"]["containers"][0]["securityContext"]["seccompProfile"]},
        "containers": runtime["spec"]["containers"]}))
    assert len(specs) >= 2
    for name, spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True and pod.get("runAsUser", 0) != 0, name
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert not sc.get("privileged"), name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert container.get("resources", {}).get("limits"), f"{name}: limits set"


def test_no_secret_values_in_the_repository():
    for obj in _objects():
        if obj["kind"] == "Secret":
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert obj["stringData"][key] == "REPLACE_ME"
            assert obj["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"]


def test_the_monitor_cronjob_config_is_a_valid_conveyor_config():
    from components.composition.config import config_from_dict, load_config
    from components.stages.split.config import SplitConfig

    cm = next(o for o in _objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "conveyor-monitor-config")
    cfg = config_from_dict(yaml.safe_load(cm["data"]["config.yaml"]), origin="monitor ConfigMap")
    assert cfg.split == load_config().split == SplitConfig()  # the split the champion trained on
    cron = next(o for o in _objects() if o["kind"] == "CronJob")
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["conveyor", "monitor"] and "/etc/conveyor/config.yaml" in command
