"""Approval on a cluster, call by call against the API server stand-in (tests/standins/kubernetes/apiserver.py) that
enforces the Roles and RoleBindings the chart renders: `kubectl conveyor approve|reject|pending` as
people bound (or not) to the approver Role, identity from a SelfSubjectReview, authority from a
SelfSubjectAccessReview, the decision Job created from the chart's template (validated against the
Kubernetes schema on create), and `conveyor release-job` as that Job runs it, with the pipeline's
ServiceAccount, the chart's own config, and the registry on real files."""

from __future__ import annotations

import json

import pytest
import yaml

from components.common import audit
from components.composition.config import load_config
from components.stages.release import environments as envs_
from pipelines.kubectl_plugin import main as kubectl_conveyor
from tests.integration.test_api_rbac import _render_in
from tests.standins.kubernetes.apiserver import FakeApiServer, kserve_controller

NAMESPACE = "kubeflow-user"
APPROVERS = {"approval": {"approvers": {"users": ["alice@example.com"], "groups": ["ml-release-managers"]}}}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """The chart installed (its RBAC, the release-job template) on the stand-in, plus a kubeconfig per person."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    objects = _render_in(NAMESPACE, APPROVERS)
    server = FakeApiServer([o for o in objects if o["kind"] in ("Role", "RoleBinding")],
                           {"InferenceService": kserve_controller}, max_watch_s=1.0).start()
    template = next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"] == "conveyor-release")
    template["metadata"]["uid"] = "uid-release-template"
    server.put("batch", "cronjobs", template)
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "conveyor-release-config")
    config_file = tmp_path / "release-config.yaml"
    config_file.write_text(config["data"]["config.yaml"])

    def person(user: str, *groups: str) -> str:
        token = server.token_for_user(user, groups)
        return server.kubeconfig(tmp_path / f"{user}.kubeconfig", NAMESPACE, user, token=token)

    yield server, person, str(config_file)
    server.stop()
    from components.cluster import kube

    kube.select(None, None)  # the plugin chose a person's kubeconfig for this process: forget it


def _calls(server, user):
    return [(c.verb, c.group, c.resource, c.status) for c in server.calls if c.user == user]


@pytest.mark.parametrize("user, groups", [("alice@example.com", ()), ("bob@example.com", ("ml-release-managers",))])
def test_an_approver_starts_the_decision_job_with_the_identity_the_api_server_gave(cluster, capsys, user, groups):
    server, person, _config = cluster
    kubeconfig = person(user, *groups)
    assert kubectl_conveyor(["approve", "spam-classifier", "0123456789ab", "--reason", "staging report reviewed",
                             "--kubeconfig", kubeconfig, "-n", NAMESPACE]) == 0
    out = capsys.readouterr().out
    assert f"by {user}: job/conveyor-release-approve-01234567-" in out
    calls = _calls(server, user)
    assert all(status < 400 for *_, status in calls), calls  # every call allowed (and found)
    assert [(v, g, r) for v, g, r, _ in calls] == [
        ("create", "authentication.k8s.io", "selfsubjectreviews"),
        ("create", "authorization.k8s.io", "selfsubjectaccessreviews"),
        ("list", "batch", "cronjobs"), ("create", "batch", "jobs")]
    [job] = [o for (g, r, _n, _name), o in server.objects.items() if (g, r) == ("batch", "jobs")]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONVEYOR_DECISION"] == "approve" and env["CONVEYOR_DECISION_VERSION"] == "0123456789ab"
    approver = json.loads(env["CONVEYOR_APPROVER"])
    assert approver["username"] == user and set(groups) <= set(approver["groups"])
    assert job["metadata"]["annotations"]["conveyor.dev/decided-by"] == user
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "conveyor-pipeline"
    assert "conveyor.dev/template" not in job["metadata"]["labels"]


def test_someone_without_the_approver_role_is_refused_before_anything_is_created(cluster, capsys):
    server, person, _config = cluster
    kubeconfig = person("mallory@example.com", "developers")
    for verb in ("approve", "reject"):
        assert kubectl_conveyor([verb, "spam-classifier", "0123456789ab", "--reason", "ship it",
                                 "--kubeconfig", kubeconfig, "-n", NAMESPACE]) == 9
        assert f"mallory@example.com may not {verb} releases into production" in capsys.readouterr().err
    assert not any(r == "jobs" for (_g, r, _n, _name) in server.objects)
    # only the two reviews, which any authenticated user may create
    assert {(v, r) for v, _g, r, _s in _calls(server, "mallory@example.com")} == {
        ("create", "selfsubjectreviews"), ("create", "selfsubjectaccessreviews")}


def test_pending_lists_what_the_staging_step_marked(cluster, capsys):
    from components.cluster.isvc import build_inference_service
    from components.stages.release.cluster_staging import environment_target, mark_awaiting
    from components.stages.release.config import EnvironmentConfig

    server, person, config = cluster
    cfg = load_config(config)
    staging = cfg.environments[0]
    assert (staging.name, cfg.environments[-1].approval) == ("staging", "manual")  # the chart's defaults
    target = environment_target(cfg.deploy, staging)
    server.put("serving.kserve.io", "inferenceservices",
               build_inference_service(target, cfg.model_name, "0123456789ab", env="staging"))
    class Through:  # the staging step's InferenceService interface, straight onto the stand-in's objects
        def get(self, name, namespace):
            return server.find("serving.kserve.io", "inferenceservices", namespace, name)

        def patch(self, name, namespace, patch):
            from components.cluster.deploy import merge_patch

            obj = server.find("serving.kserve.io", "inferenceservices", namespace, name)
            return server.put("serving.kserve.io", "inferenceservices", merge_patch(obj, patch))

    request = {"model": "spam-classifier", "version": "0123456789ab", "env": "production",
               "requested_at": "2026-12-06T10:00:00Z", "expires_at": "2026-12-09T10:00:00Z"}
    mark_awaiting(cfg.deploy, EnvironmentConfig(name="staging", inference_service=target.name), request,
                  api=Through())
    kubeconfig = person("alice@example.com")
    assert kubectl_conveyor(["pending", "-o", "json", "--kubeconfig", kubeconfig, "-n", NAMESPACE]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["version"] == "0123456789ab" and row["inference_service"] == "spam-classifier-staging"
    assert all(status < 400 for *_, status in _calls(server, "alice@example.com"))


def test_the_release_job_records_the_decision_and_releases_with_the_pipeline_role(cluster, capsys, tmp_path,
                                                                                  monkeypatch, own_two_versions):
    """What the decision Job runs, as it runs it: `conveyor release-job` with the Job's environment,
    the chart's config, the pipeline ServiceAccount's Role on the API server; then its refusals."""
    import kubernetes.config.kube_config as kube_config

    from components.stages.registry.store import resolve_version
    from pipelines.cli import main as conveyor
    from tests.unit.stages.release.test_environments import MODEL, _gate, _replay_rows

    server, _person, config = cluster
    store, _stable, cand, texts, labels = own_two_versions
    store.delete(f"models/{MODEL}/aliases/production.json")  # a first deployment on this cluster
    _gate(store, cand)
    _replay_rows(store, cand, texts, labels)
    envs = load_config(config).environments
    envs_.record_verification(store, MODEL, cand, "staging", {"passed": True, "reason": "2 passing intervals",
                                                               "stable": None, "checks": []})
    envs_.request_approval(store, MODEL, cand, envs[-1], {"env": "staging", "outcome": "passed"})
    with open(config) as handle:
        chart_config = yaml.safe_load(handle)
    chart_config["model_name"] = MODEL  # the chart's config, for this test's model
    (tmp_path / "job-config.yaml").write_text(yaml.safe_dump(chart_config))
    path = server.kubeconfig(tmp_path / "pipeline.kubeconfig", NAMESPACE, "conveyor-pipeline")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
    monkeypatch.setenv("KUBECONFIG", path)
    from components.cluster import kube

    kube.select(path, None)  # the plugin calls above chose another person's kubeconfig in this process
    user = {"username": "alice@example.com", "groups": ["ml-release-managers", "system:authenticated"]}
    for key, value in {"CONVEYOR_DECISION": "approve", "CONVEYOR_DECISION_MODEL": MODEL,
                       "CONVEYOR_DECISION_VERSION": cand, "CONVEYOR_DECISION_ENV": "production",
                       "CONVEYOR_DECISION_REASON": "reviewed", "CONVEYOR_APPROVER": json.dumps(user),
                       "CONVEYOR_SERVICE_ACCOUNT": "conveyor-pipeline"}.items():
        monkeypatch.setenv(key, value)
    args = ["release-job", "--store", store.uri, "--config", str(tmp_path / "job-config.yaml")]
    assert conveyor(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "granted by alice@example.com" in out and "to production: Promoted" in out
    assert resolve_version(store, MODEL, "production") == cand
    granted = next(e for e in audit.read_entries(store) if e["event"] == "approval_granted")
    assert granted["actor"]["name"] == "alice@example.com"
    assert granted["actor"]["authenticated_by"] == "SelfSubjectReview"
    assert granted["actor"]["service_account"] == "conveyor-pipeline"
    pipeline_calls = server.calls_by(":conveyor-pipeline")
    assert pipeline_calls and not [c for c in pipeline_calls if c.status == 403], pipeline_calls
    obj = server.find("serving.kserve.io", "inferenceservices", NAMESPACE, "spam-classifier")
    assert obj["spec"]["predictor"]["model"]["storageUri"].endswith(f"/{MODEL}/{cand}")
    # the same Job again: the decision is already recorded, so it is refused and changes nothing
    before = len(audit.read_entries(store))
    assert conveyor(args) == 10
    assert "already granted" in capsys.readouterr().err
    assert len(audit.read_entries(store)) == before
    monkeypatch.setenv("CONVEYOR_APPROVER", "alice")  # not what the plugin sets: refused, nothing recorded
    assert conveyor(args) == 2


def test_kubectl_verbs_carry_the_authenticated_user_into_the_audit_log(cluster, tmp_path, monkeypatch, file_store,
                                                                      capsys):
    """promote/rollback/pause/resume as a person bound to the chart's canary Role: the verb is kept
    on the rollout with the SelfSubjectReview username, and the release step writes it to the audit
    log with that person as the actor."""
    import kubernetes.config.kube_config as kube_config

    from components.cluster import kube
    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster import CanaryController
    from components.stages.release.kserve_state import read_state
    from components.stages.release.records import store_record

    server, person, _config = cluster
    server.rbac.append({"kind": "RoleBinding", "metadata": {"name": "carol-canary", "namespace": NAMESPACE},
                        "roleRef": {"kind": "Role", "name": "conveyor-canary"},
                        "subjects": [{"kind": "User", "name": "carol@example.com"}]})
    pipeline = server.kubeconfig(tmp_path / "pipeline.kubeconfig", NAMESPACE, "conveyor-pipeline")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", pipeline)
    kube.select(pipeline, None)
    cfg = load_config()
    deploy = cfg.deploy.model_copy(update={"namespace": NAMESPACE})
    ctl = CanaryController(KubernetesInferenceServiceApi(), deploy.name, NAMESPACE, ready_timeout_s=20,
                           log=lambda _m: None)
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "aaa111")
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "bbb222")  # a canary in progress
    carol = person("carol@example.com")
    for verb in ("pause", "resume", "promote"):
        assert kubectl_conveyor(["canary", verb, deploy.name, "-n", NAMESPACE, "--kubeconfig", carol]) == 0
    capsys.readouterr()
    state = read_state(server.find("serving.kserve.io", "inferenceservices", NAMESPACE, deploy.name))
    assert [(v["verb"], v["by"]) for v in state.verbs] == [(v, "carol@example.com")
                                                          for v in ("pause", "resume", "promote")]
    assert not [c for c in server.calls if c.user == "carol@example.com" and c.status == 403]
    store_record(file_store, {"model": cfg.model_name, "candidate": "bbb222", "backend": "kserve",
                              "started_at": "2026-01-01T00:00:00+00:00", "outcome": str(state.phase),
                              "state": state.to_json(), "config": cfg.canary.model_dump(mode="json")}, state)
    entries = [e for e in audit.read_entries(file_store) if e["event"] == "rollout_verb"]
    assert [(e["details"]["outcome"], e["actor"]["name"]) for e in entries] == [
        (v, "carol@example.com") for v in ("pause", "resume", "promote")]
