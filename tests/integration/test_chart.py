"""charts/conveyor checked by Helm's own engine (helm-python-sdk): lint in strict mode, render with
the default values and three other values files, every rendered core object strict against two
Kubernetes schemas, every custom resource against its SDK model or generator, pod security and
RBAC on what is rendered, and bad values refused by values.schema.json."""

from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.integration.test_manifests import CUSTOM_GROUPS
from tests.standins.kubernetes.rules import KUBE_VERSIONS
from tests.support.paths import CHART

VALUES_FILES = [None, "ci/gpu-values.yaml", "ci/created-secret-values.yaml", "ci/standard-mode-values.yaml",
                "ci/approval-values.yaml", "ci/security-values.yaml"]


def _values(name: str | None) -> dict:
    return yaml.safe_load((CHART / name).read_text()) if name else {}


def _render(values: dict, name: str = "conveyor") -> list[dict]:
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(values, name=name, namespace="team-a", is_install=True)
    objects = []
    for template, text in out.items():
        if template.endswith("NOTES.txt"):
            continue
        objects += [d for d in yaml.safe_load_all(text) if d]
    return objects


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_is_clean_in_strict_mode(values_file):
    result = helm_python.lint(str(CHART), _values(values_file), strict=True, namespace="team-a",
                              kube_version="1.34.0")
    assert result["errors"] == []
    assert result["messages"] == []


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_rendered_objects_validate(values_file):
    objects = _render(_values(values_file))
    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    from tests.standins.kubernetes.custom_resources import validate_custom

    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            validate_custom(obj)
        if obj["kind"] == "PrometheusRule":
            from components.composition.config import load_config
            from components.stages.monitor.alerts import rule_groups

            cfg = load_config()
            assert obj["spec"]["groups"] == rule_groups("spam-classifier", cfg.monitor, cfg.canary)


def test_values_files_change_what_they_say():
    gpu = {o["kind"]: o for o in _render(_values("ci/gpu-values.yaml"))}
    predictor = gpu["InferenceService"]["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and predictor["tolerations"]
    hooks = {o["metadata"]["name"]: o for o in _render(_values("ci/gpu-values.yaml")) if o["kind"] == "Pod"}
    assert {h["metadata"]["annotations"]["helm.sh/hook"] for h in hooks.values()} == {"test"}
    assert set(hooks) == {"conveyor-test-store", "conveyor-test-predictor"}
    default = {o["kind"] for o in _render({})}
    assert "Secret" not in default and "InferenceService" not in default  # existing secret; pipeline deploys
    created = next(o for o in _render(_values("ci/created-secret-values.yaml")) if o["kind"] == "Secret")
    assert created["metadata"]["name"] == "conveyor-s3"
    assert created["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "1"
    assert created["stringData"]["AWS_ENDPOINT_URL"] == "https://s3.example.com"
    standard = {o["kind"]: o for o in _render(_values("ci/standard-mode-values.yaml"))}
    assert standard["InferenceService"]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert {"PrometheusRule", "NetworkPolicy"}.isdisjoint(standard)
    cronjobs = {o["metadata"]["name"] for o in _render(_values("ci/standard-mode-values.yaml"))
                if o["kind"] == "CronJob"}
    assert cronjobs == {"conveyor-release"}  # no monitor CronJob; the release-job template stays
    images = {"registry": "registry.example.com/ml", "tag": "1.2.3"}
    runtime = next(o for o in _render({"image": images, "predictor": {"workers": 2}}) if o["kind"] == "ServingRuntime")
    container = runtime["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ml/conveyor-predictor:1.2.3"
    assert container["args"][container["args"].index("--workers") + 1] == "2"  # the CLI parses it as an int
    assert {"name": "CONVEYOR_LOG_FORMAT", "value": "text"} in container["env"]
    as_json = {(o["kind"], o["metadata"]["name"]): o for o in _render({"logFormat": "json"})}
    cron = as_json["CronJob", "conveyor-monitor"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    release = as_json["CronJob", "conveyor-release"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    for env in (as_json["ServingRuntime", "conveyor-predictor"]["spec"]["containers"][0]["env"], cron["env"],
                release["env"]):
        assert {"name": "CONVEYOR_LOG_FORMAT", "value": "json"} in env


def test_rendered_pods_are_restricted_and_rbac_has_no_wildcards():
    for values_file in VALUES_FILES:
        objects = _render(_values(values_file))
        for obj in objects:
            if obj["kind"] == "Role":
                for rule in obj["rules"]:
                    assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            spec = None
            if obj["kind"] == "CronJob":
                spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            elif obj["kind"] == "Pod":
                spec = obj["spec"]
            if spec is not None:
                assert spec["securityContext"]["runAsNonRoot"] is True
                assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
                for container in spec["containers"]:
                    sc = container["securityContext"]
                    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
                    assert sc["readOnlyRootFilesystem"] is True and container["resources"]["limits"]
            if obj["kind"] == "ServingRuntime":
                sc = obj["spec"]["containers"][0]["securityContext"]
                assert sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
                assert sc["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("bad, message", [
    ({"predictor": {"mode": "serverless"}}, "mode"),
    ({"s3": {"existingSecret": ""}}, "accessKeyId"),
    ({"model": {"version": "latest"}}, "version"),
    ({"image": {"tag": "has space"}}, "tag"),
    ({"replicas": 3}, "replicas"),
])
def test_bad_values_are_refused_by_the_schema(bad, message):
    with pytest.raises(helm_python.HelmError, match=message):
        _render(bad)


def test_readme_cluster_guide_uses_the_charts_names():
    import re

    readme = (CHART.parents[1] / "README.md").read_text()
    guide = readme[readme.index("## On a cluster"):]
    rendered = _render({"model": {"version": "0123456789ab"}})
    names = {o["metadata"]["name"] for o in rendered}
    for name in ("conveyor-pipeline", "conveyor-canary", "conveyor-predictor"):
        assert name in guide and name in names
    assert "helm install conveyor charts/conveyor" in guide and "helm test conveyor" in guide
    secret = re.search(r"create secret generic (\S+)", guide).group(1)
    assert secret == helm_python.Chart.load(str(CHART)).values["s3"]["existingSecret"]
    for flag in re.findall(r"--set ([a-z.A-Z]+)=", guide):  # every --set in the guide is a real value
        node = helm_python.Chart.load(str(CHART)).values
        for part in flag.split("."):
            assert part in node, flag
            node = node[part]


def test_the_readme_values_example_renders():
    readme = (CHART.parents[1] / "README.md").read_text()
    guide = readme[readme.index("## On a cluster"):]
    example = guide[guide.index("```yaml") + len("```yaml"):]
    values = yaml.safe_load(example[:example.index("```")])
    kinds = {o["kind"]: o for o in _render(values)}
    assert kinds["InferenceService"]["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


EVERYTHING = {"model": {"version": "0123456789ab"}, "trainer": {"runtime": {"enabled": True}},
              "pipelines": {"install": True}, "s3": {"existingSecret": "", "accessKeyId": "k", "secretAccessKey": "s"},
              "alerting": {"alertmanager": {"enabled": True, "webhookUrl": "https://hooks.example.com/x"}}}


def test_two_releases_in_one_namespace_share_no_object_name():
    """Names come from the release (<release>-conveyor-...), so two installs in one namespace never
    collide, the KFP pipeline registrations included. The one name that is not the release's is the
    InferenceService: it is the model's endpoint (`deploy.name`, the model name), rendered only with
    model.version, so two releases that each serve a model in one namespace serve different models."""
    a = {(o["kind"], o["metadata"]["name"]) for o in _render(EVERYTHING, name="a")}
    b = {(o["kind"], o["metadata"]["name"]) for o in _render(EVERYTHING, name="b")}
    assert a & b == {("InferenceService", "spam-classifier")}, a & b  # the chart's default model.name
    assert all(name.startswith("a-conveyor-") for kind, name in a if kind != "InferenceService")
    other_model = {**EVERYTHING, "model": {**EVERYTHING["model"], "name": "ticket-router"}}
    assert a.isdisjoint((o["kind"], o["metadata"]["name"]) for o in _render(other_model, name="b"))
    assert not {(o["kind"], o["metadata"]["name"]) for o in _render({}, name="a")} & {
        (o["kind"], o["metadata"]["name"]) for o in _render({}, name="b")}  # the defaults: nothing shared
    # KFP's webhook: a PipelineVersion's spec.pipelineName names an existing Pipeline
    objects = _render(EVERYTHING, name="a")
    pipelines = {o["metadata"]["name"] for o in objects if o["kind"] == "Pipeline"}
    versions = [o for o in objects if o["kind"] == "PipelineVersion"]
    assert len(pipelines) == len(versions) == 5 and {v["spec"]["pipelineName"] for v in versions} == pipelines
    assert "a-conveyor-training" in pipelines
    names = {o["metadata"]["name"] for o in _render({"fullnameOverride": "spam-ml"})}
    assert "spam-ml-pipeline" in names and "spam-ml-monitor" in names
    rb = next(o for o in _render({}, name="team-b") if o["kind"] == "RoleBinding")
    assert rb["roleRef"]["name"] == rb["subjects"][0]["name"] and rb["roleRef"]["name"].startswith("team-b-conveyor-")


def test_every_rendered_object_carries_the_standard_labels():
    for values in (EVERYTHING, *(_values(f) for f in VALUES_FILES)):
        for obj in _render(values, name="team-a"):
            labels = obj["metadata"].get("labels") or {}
            assert labels.get("app.kubernetes.io/name") == "conveyor", obj["metadata"]["name"]
            assert labels.get("app.kubernetes.io/instance") == "team-a"
            assert labels.get("app.kubernetes.io/version") == "0.1.0"
            assert labels.get("app.kubernetes.io/managed-by") == "Helm"
            assert labels.get("helm.sh/chart") == "conveyor-0.1.0"
            assert labels.get("app.kubernetes.io/part-of") == "conveyor"
            if obj["kind"] == "CronJob":  # its pods carry the selector labels too
                pod = obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
                assert {k: pod[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")} == {
                    "app.kubernetes.io/name": "conveyor", "app.kubernetes.io/instance": "team-a"}


def test_helm_test_checks_the_store_with_or_without_a_model():
    chart = helm_python.Chart.load(str(CHART))
    for values, predictor_test in (({}, False), ({"model": {"version": "0123456789ab"}}, True)):
        hooks = {o["metadata"]["name"] for o in _render(values) if o["kind"] == "Pod"}
        assert "conveyor-test-store" in hooks and ("conveyor-test-predictor" in hooks) == predictor_test
        notes = chart.render(values, name="conveyor", namespace="team-a",
                             is_install=True)["conveyor/templates/NOTES.txt"]
        assert "helm test conveyor" in notes and ("the predictor test needs model.version" in " ".join(notes.split())) \
            != predictor_test
    store = next(o for o in _render({}) if o["metadata"]["name"] == "conveyor-test-store")
    assert store["spec"]["containers"][0]["command"] == ["python", "-m", "components.common.storage", "check",
                                                           "s3://conveyor"]


def test_notes_give_another_releases_names_for_the_config():
    chart = helm_python.Chart.load(str(CHART))
    notes = chart.render({}, name="team-b", namespace="ml", is_install=True)["conveyor/templates/NOTES.txt"]
    assert "deploy: {runtime: team-b-conveyor-predictor, service_account: team-b-conveyor-predictor}" in notes
    assert "data: {spark: {service_account: team-b-conveyor-spark}}" in notes
    assert "deploy:" not in chart.render({}, name="conveyor", namespace="ml", is_install=True)[
        "conveyor/templates/NOTES.txt"]  # the default release's names are the config's defaults


def test_the_approval_objects_say_what_the_values_say():
    from components.composition.config import config_from_dict

    objects = {(o["kind"], o["metadata"]["name"]): o for o in _render(_values("ci/approval-values.yaml"))}
    role = objects["Role", "conveyor-approver"]
    decide = next(r for r in role["rules"] if "approve" in r["verbs"])
    assert decide == {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                      "resourceNames": ["spam-classifier"], "verbs": ["approve", "reject"]}
    binding = objects["RoleBinding", "conveyor-approver"]
    assert {(s["kind"], s["name"]) for s in binding["subjects"]} == {("User", "alice@example.com"),
                                                                     ("Group", "ml-release-managers")}
    template = objects["CronJob", "conveyor-release"]
    assert template["spec"]["suspend"] is True and template["metadata"]["labels"]["conveyor.dev/template"] == \
        "release-job"
    config = config_from_dict(yaml.safe_load(objects["ConfigMap", "conveyor-release-config"]["data"]["config.yaml"]))
    assert [(e.name, e.approval) for e in config.environments] == [("staging", "auto"), ("production", "auto")]
    assert config.environments[-1].approval_ttl_hours == 24 and config.rollout.strategy == "bluegreen"
    assert config.deploy.namespace == "team-a" and config.deploy.runtime == "conveyor-predictor"
    default = {(o["kind"], o["metadata"]["name"]) for o in _render({})}
    assert ("Role", "conveyor-approver") in default and ("RoleBinding", "conveyor-approver") not in default
    disabled = {(o["kind"], o["metadata"]["name"]) for o in _render({"approval": {"enabled": False}})}
    assert not disabled & {("CronJob", "conveyor-release"), ("Role", "conveyor-approver")}


def test_the_security_values_reach_every_pod_that_needs_them():
    """s3.caSecret becomes AWS_CA_BUNDLE in every pod that reads the store, the encryption goes into
    the S3 Secret, and the predictor's token Secret is mounted and named by file, never by value."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _render(_values("ci/security-values.yaml"))}
    secret = objects[("Secret", "conveyor-s3")]
    assert secret["stringData"]["CONVEYOR_STORE_ENCRYPTION"] == "sse-kms"
    assert secret["stringData"]["CONVEYOR_STORE_KMS_KEY_ID"] == "alias/conveyor"
    assert secret["stringData"]["AWS_ENDPOINT_URL"] == "https://minio.storage:9443"

    def pod_of(obj):
        spec = obj["spec"]
        for step in ("jobTemplate", "spec", "template", "spec"):
            spec = spec.get(step, spec)
        return spec

    for key in (("CronJob", "conveyor-monitor"), ("CronJob", "conveyor-release"), ("Pod", "conveyor-test-store")):
        pod = pod_of(objects[key])
        [container] = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AWS_CA_BUNDLE"] == "/etc/conveyor/s3-ca/ca.crt", key
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["s3-ca"] == "/etc/conveyor/s3-ca", key
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["s3-ca"]["secret"] == {"secretName": "conveyor-s3-ca", "items": [{"key": "ca.crt",
                                                                                         "path": "ca.crt"}]}
    release = pod_of(objects[("CronJob", "conveyor-release")])["containers"][0]
    assert {"name": "CONVEYOR_INFERENCE_TOKEN_FILE", "value": "/etc/conveyor/inference-token/token"} in release["env"]
    runtime = objects[("ServingRuntime", "conveyor-predictor")]["spec"]
    [predictor] = runtime["containers"]
    env = {e["name"]: e.get("value") for e in predictor["env"]}
    assert env["CONVEYOR_AUTH_TOKEN_FILE"] == "/etc/conveyor/inference-token/token"
    assert env["CONVEYOR_LOG_TEXT"] == "hashed"
    assert runtime["volumes"] == [{"name": "tmp", "emptyDir": {}}, {"name": "inference-token", "secret": {
        "secretName": "conveyor-inference-token", "items": [{"key": "token", "path": "token"}]}}]
    # the defaults: redacted logs, no token, no CA
    plain = {(o["kind"], o["metadata"]["name"]): o for o in _render({})}
    [predictor] = plain[("ServingRuntime", "conveyor-predictor")]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in predictor["env"]}
    assert env["CONVEYOR_LOG_TEXT"] == "redacted" and "CONVEYOR_AUTH_TOKEN_FILE" not in env
    # every mount has its volume (the read-only root filesystem needs /tmp: before, the chart had none)
    spec = plain[("ServingRuntime", "conveyor-predictor")]["spec"]
    assert {m["name"] for m in predictor["volumeMounts"]} <= {v["name"] for v in spec["volumes"]}


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_volume_mount_has_its_volume(values_file):
    """A mount without a volume is a pod that never starts (the ServingRuntime's /tmp once had none)."""
    values = _values(values_file)
    values.setdefault("model", {"name": "spam-classifier", "version": "0123456789ab"})
    missing = []
    for obj in _render(values):
        spec = obj.get("spec") or {}
        for step in ("jobTemplate", "spec", "template", "spec"):
            spec = spec.get(step, spec) if isinstance(spec, dict) else spec
        if not isinstance(spec, dict) or "containers" not in spec:
            continue
        volumes = {v["name"] for v in spec.get("volumes") or []}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    missing.append(f"{obj['kind']}/{obj['metadata']['name']} {container['name']}: {mount['name']}")
    assert missing == []
