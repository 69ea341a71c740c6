"""The real `kubernetes` client code of the Katib launcher, the deploy step, the canary controller
and the kubectl plugin, against an API server stand-in over HTTP (tests/standins/kubernetes/apiserver.py) that enforces
the RBAC the chart renders, the upstream CRD schemas, the ported webhooks and the API server's
patch / conflict / watch semantics. Every call is recorded and must be allowed by the Role of the
ServiceAccount that makes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.common.errors import ClusterError
from components.composition.config import load_config
from tests.standins.kubernetes.apiserver import (
    FakeApiServer,
    katib_controller,
    kserve_controller,
    spark_operator,
    trainer_controller,
)

NAMESPACE = "kubeflow-user"


@pytest.fixture(scope="module")
def chart_rbac():
    """The Roles and RoleBindings `helm install` creates in the namespace."""
    return [o for o in _render_in(NAMESPACE) if o["kind"] in ("Role", "RoleBinding")]


def _render_in(namespace: str, values: dict | None = None) -> list[dict]:
    import helm_python
    import yaml

    from tests.integration.test_chart import CHART

    out = helm_python.Chart.load(str(CHART)).render(values or {}, name="conveyor", namespace=namespace,
                                                   is_install=True)
    objects = []
    for template, text in out.items():
        if not template.endswith("NOTES.txt"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("metadata", {}).setdefault("namespace", namespace)
                    objects.append(doc)
    return objects


@pytest.fixture
def api_server(chart_rbac):
    server = FakeApiServer(chart_rbac, {"InferenceService": kserve_controller, "Experiment": katib_controller,
                                        "SparkApplication": spark_operator, "TrainJob": trainer_controller},
                           max_watch_s=1.0).start()
    yield server
    server.stop()


@pytest.fixture
def as_account(api_server, tmp_path, monkeypatch):
    """Point the kubernetes client at the stand-in as one of the chart's ServiceAccounts."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def use(service_account: str) -> str:
        import kubernetes.config.kube_config as kube_config

        path = api_server.kubeconfig(tmp_path / f"{service_account}.kubeconfig", NAMESPACE, service_account)
        monkeypatch.setenv("KUBECONFIG", path)  # for subprocesses (kubectl conveyor)
        # the client reads $KUBECONFIG once, at import: point this process's default there too
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
        return path

    return use


def _assert_all_allowed(server: FakeApiServer, account: str) -> set[tuple]:
    calls = server.calls_by(f":{account}")
    assert calls, f"no API call recorded for {account}"
    denied = [c for c in calls if c.status == 403]
    assert not denied, f"{account} made calls its Role does not allow: {denied}"
    return {(c.verb, c.group or "core", c.resource, c.subresource) for c in calls}


def test_katib_launcher_calls_are_allowed_by_the_pipeline_role(api_server, as_account):
    from components.stages.search.backends import run_search

    as_account("conveyor-pipeline")
    cfg = load_config().model_dump(mode="json", exclude_none=True)
    cfg["cluster"] = {**cfg["cluster"], "namespace": NAMESPACE}
    result = run_search("katib", "s3://conveyor", "spamassassin", "v1", cfg, "rbac-run", log=lambda _m: None)
    assert result["best_params"]["lr"] == 0.1 and result["best_value"] == pytest.approx(0.95)
    assert len(result["trials"]) == 2
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert {("get", "kubeflow.org", "experiments", ""), ("create", "kubeflow.org", "experiments", ""),
            ("watch", "kubeflow.org", "experiments", ""), ("list", "kubeflow.org", "trials", "")} <= seen


def test_spark_ingest_launcher_calls_are_allowed_and_its_driver_gives_the_local_version(api_server, as_account,
                                                                                        tmp_path):
    """engine=spark on a cluster: the pipeline's ServiceAccount creates and watches the
    SparkApplication; the stand-in operator runs the driver program with the manifest's
    arguments; the version equals the in-process engine's."""
    from components.common.storage import FileStore
    from components.stages.ingest.engines import run_ingest
    from components.stages.ingest.executor import ingest
    from tests.support.malformed import write_mail_folder

    as_account("conveyor-pipeline")
    write_mail_folder(tmp_path / "mail")
    cfg = load_config()
    dump = cfg.model_dump(mode="json")
    engine_config = {"spark": dump["data"]["spark"], "cluster": {**dump["cluster"], "namespace": NAMESPACE}}
    store = f"file://{tmp_path / 'store'}"
    result = run_ingest("spark", [str(tmp_path / "mail")], "mail", store, cfg.data.source, cfg.cleaning,
                        engine_config=engine_config, run_id="rbac-run", on_cluster=True, log=lambda _m: None)
    local = ingest([str(tmp_path / "mail")], "mail", FileStore(str(tmp_path / "local")), cfg.data.source,
                   cfg.cleaning)
    assert result.new and result.version == local.version and result.quarantine_reasons == local.quarantine_reasons
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert {("get", "sparkoperator.k8s.io", "sparkapplications", ""),
            ("create", "sparkoperator.k8s.io", "sparkapplications", ""),
            ("watch", "sparkoperator.k8s.io", "sparkapplications", "")} <= seen
    # What the driver's ServiceAccount may do: create and clean up its executor pods.
    from tests.standins.kubernetes.apiserver import rbac_allows

    for verb in ("create", "delete", "watch", "list"):
        assert rbac_allows(api_server.rbac, f"system:serviceaccount:{NAMESPACE}:conveyor-spark", verb, "", "pods", "",
                           NAMESPACE, "x")


def _spark_engine_config(cfg) -> dict:
    dump = cfg.model_dump(mode="json")
    return {"spark": dump["data"]["spark"], "cluster": {**dump["cluster"], "namespace": NAMESPACE}}


@pytest.mark.slow  # make test-slow: ~25 s; test_spark_ingest compares the Spark vocabulary fit in make test
def test_spark_featurize_is_a_sparkapplication_whose_driver_gives_the_in_process_features(api_server, as_account,
                                                                                          tmp_path):
    """engine=spark on a cluster, featurize: the step stages its split files in the store and creates
    a SparkApplication; the stand-in operator runs the driver program (Spark local[2]): the labels,
    the vocabulary as a Spark aggregation and the encoding as tasks over row-group ranges read by
    ranged reads; the step fetches the feature cache entry. Same featurizer bytes, same feature rows
    and the same stats as the in-process step; a second run finds the cache and launches nothing."""
    import pyarrow.parquet as pq

    from components.common.storage import FileStore
    from components.dataset import versioning as v
    from components.stages.featurize.engines import run_featurize
    from components.stages.featurize.executor import featurize_split_files
    from components.stages.split.config import SplitConfig
    from components.stages.split.executor import split_to_files
    from tests.support.training_data import ingest_corpus

    as_account("conveyor-pipeline")
    cfg = load_config()
    features = {**cfg.features.model_dump(mode="json"), "kind": "vocabulary", "min_freq": 2, "num_buckets": 3000}
    out = {}
    for engine, name in (("local", "local"), ("spark", "cluster")):
        (tmp_path / name).mkdir()
        store = FileStore(str(tmp_path / name / "store"))
        version = ingest_corpus(tmp_path / name, store, n=500)
        rows = {split: str(tmp_path / name / f"{split}-rows.parquet") for split in ("train", "validation", "test")}
        split_to_files(store, v.resolve(store, "toy", version), SplitConfig(), rows, batch_rows=40)  # many row groups
        meta = {"dataset": "toy", "version": version, "split": SplitConfig().model_dump(mode="json")}
        paths = {split: str(tmp_path / name / f"{split}.parquet") for split in rows}
        featurizer = str(tmp_path / name / "featurizer.json")
        run = (lambda: featurize_split_files(store.uri, rows, meta, features, featurizer, paths)) if engine == "local" \
            else (lambda: run_featurize(store.uri, rows, meta, features, featurizer, paths, engine="spark",  # noqa: B023
                                        engine_config=_spark_engine_config(cfg), run_id="feat-run", on_cluster=True,
                                        log=lambda _m: None))
        result = run()
        out[name] = (store, result, Path(featurizer).read_bytes(), {s: pq.read_table(p) for s, p in paths.items()})
    (_, local, local_bytes, local_tables) = out["local"]
    (store, cluster, cluster_bytes, cluster_tables) = out["cluster"]
    assert pq.ParquetFile(str(tmp_path / "cluster" / "train-rows.parquet")).num_row_groups > 4
    assert cluster_bytes == local_bytes and len(json_loads(cluster_bytes)["vocabulary"]) > 100
    for split in local_tables:
        assert cluster_tables[split].equals(local_tables[split]), split
    assert cluster["stats"] == local["stats"] and cluster["features"] == local["features"]
    assert not [k for k in store.list("jobs/featurize") if "/parts/" in k]  # the driver's parts are cleaned up
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert ("create", "sparkoperator.k8s.io", "sparkapplications", "") in seen
    created = [c for c in api_server.calls if c.verb == "create" and c.resource == "sparkapplications"]
    run_featurize(store.uri, {s: str(tmp_path / "cluster" / f"{s}-rows.parquet") for s in local_tables},
                  {"dataset": "toy", "version": cluster["version"], "split": cluster["split"]}, features,
                  str(tmp_path / "again.json"), {s: str(tmp_path / f"again-{s}.parquet") for s in local_tables},
                  engine="spark", engine_config=_spark_engine_config(cfg), run_id="feat-run-2", on_cluster=True,
                  log=lambda _m: None)
    assert [c for c in api_server.calls if c.verb == "create" and c.resource == "sparkapplications"] == created
    assert (tmp_path / "again.json").read_bytes() == local_bytes


def json_loads(data: bytes):
    return json.loads(data)


@pytest.mark.slow  # make test-slow: ~45 s; the launcher test keeps Spark ingest in make test
def test_spark_ingest_splits_an_s3_parquet_source_by_row_group(api_server, as_account, s3_env, tmp_path):
    """An S3 Parquet source of many row groups becomes several Spark units, each read by ranged
    reads of its own row groups (not the object); through the stand-in operator the driver gives the
    in-process version."""
    import pyarrow.parquet as pq

    from components.common.storage import FileStore, open_store
    from components.stages.ingest.engines import run_ingest
    from components.stages.ingest.executor import ingest
    from components.stages.ingest.readers import SourceReader, discover
    from components.stages.ingest.spark_engine import _units

    as_account("conveyor-pipeline")
    import random

    import pyarrow as pa

    rng = random.Random(5)
    words = [f"w{i}" for i in range(5000)]
    table = pa.table({"text": [" ".join(rng.choices(words, k=25)) for _ in range(12_000)],
                      "label": [rng.choice(["ham", "spam"]) for _ in range(12_000)]})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=600)  # 20 row groups, ~1 MB
    sources = open_store(f"s3://sources/rowgroups-{os.getpid()}")
    sources.upload(str(tmp_path / "rows.parquet"), "rows.parquet")
    uri = sources.url("rows.parquet")
    cfg = load_config()
    settings = cfg.data.source
    units = _units(discover([uri], settings), settings, 2)
    assert len(units) > 1 and all(a >= 0 for _, a, _ in units)
    # a task's reader fetches the footer and its own row groups, a fraction of the object
    from components.common.storage import RangedObject

    file, start, stop = units[1]
    fetched = []
    original = RangedObject.readinto

    def counting(self, buffer):
        n = original(self, buffer)
        fetched.append(n)
        return n

    import dataclasses

    RangedObject.readinto = counting
    try:
        rows = sum(b.num_rows for b in SourceReader(settings).read(
            [dataclasses.replace(discover([uri], settings)[file], row_groups=(start, stop))]))
    finally:
        RangedObject.readinto = original
    assert rows == 600 * (stop - start) and sum(fetched) < sources.size("rows.parquet") / 2
    store = f"s3://conveyor/rowgroups-{os.getpid()}"
    open_store(store).delete("")
    result = run_ingest("spark", [uri], "rg", store, settings, cfg.cleaning, engine_config=_spark_engine_config(cfg),
                        run_id="rg-run", on_cluster=True, log=lambda _m: None)
    local = ingest([str(tmp_path / "rows.parquet")], "rg", FileStore(str(tmp_path / "local")), settings,
                   cfg.cleaning)
    assert result.rows_read == local.rows_read == 12_000
    assert result.rows_accepted == local.rows_accepted and result.quarantine_reasons == local.quarantine_reasons
    sources.delete("")


def test_trainjob_train_step_calls_are_allowed_and_its_nodes_train_one_model(api_server, as_account, tmp_path):
    """cluster.train_kind=TrainJob: the train step's ServiceAccount creates and watches the TrainJob;
    the stand-in Trainer runs its 2 nodes' torchrun (1 process each, gloo over loopback) with the
    manifest's command and the torch plugin's PET_* environment; rank 0's run record comes back."""
    from components.common.config import ClusterConfig
    from components.common.storage import FileStore
    from components.stages.train.launch import train_step
    from tests.support.training_data import ingest_corpus, small_config

    as_account("conveyor-pipeline")
    store = FileStore(str(tmp_path / "store"))
    version = ingest_corpus(tmp_path, store)
    cluster = ClusterConfig(namespace=NAMESPACE, train_kind="TrainJob", nodes=2, procs_per_node=1, gpus_per_trial=0)
    record = train_step(store, "toy", version, small_config(epochs=2), "rbac-train", "img:1", cluster,
                        on_cluster=True, emit=lambda _m: None)
    assert record["status"] == "completed" and record["metrics"]["test"]["accuracy"] > 0.8
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "device_count": 0}
    assert record["params"]["train"]["world_size"] == 2  # the world that ran, not the config's 1
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert {("get", "trainer.kubeflow.org", "trainjobs", ""), ("create", "trainer.kubeflow.org", "trainjobs", ""),
            ("watch", "trainer.kubeflow.org", "trainjobs", "")} <= seen
    logs = next(iter(api_server.trainjob_logs.values()))
    assert "epoch=2" in logs[0] and "epoch=" not in logs[1]  # metric lines from rank 0 only


def _deploy_cfg():
    cfg = load_config()
    return cfg, cfg.deploy.model_copy(update={"namespace": NAMESPACE})


@pytest.mark.parametrize("mode", ["knative", "standard"])
def test_deploy_and_canary_calls_are_allowed_and_accepted_upstream(mode, api_server, as_account):
    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster import CanaryController
    from components.stages.release.kserve_state import read_state

    as_account("conveyor-pipeline")
    cfg, deploy = _deploy_cfg()
    deploy = deploy.model_copy(update={"mode": mode})
    ctl = CanaryController(KubernetesInferenceServiceApi(), deploy.name, NAMESPACE, ready_timeout_s=20,
                           log=lambda _m: None)
    first = ctl.deploy(deploy, cfg.canary, cfg.model_name, "aaa111")  # create: 100% on the first version
    assert read_state(first).phase == "Promoted"
    second = ctl.deploy(deploy, cfg.canary, cfg.model_name, "bbb222")  # merge patch: a canary at step one
    assert read_state(second).phase == "Progressing"
    promoted = ctl.promote()
    assert promoted.phase == "Promoted"
    obj = api_server.find("serving.kserve.io", "inferenceservices", NAMESPACE, deploy.name)
    assert obj["spec"]["predictor"]["model"]["storageUri"].endswith("/bbb222") and "canary" not in obj["spec"]
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert {("create", "serving.kserve.io", "inferenceservices", ""), ("patch", "serving.kserve.io",
            "inferenceservices", ""), ("watch", "serving.kserve.io", "inferenceservices", ""),
            ("create", "core", "events", "")} <= seen


def test_kubectl_plugin_calls_are_allowed_by_the_canary_role(api_server, as_account):
    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster import CanaryController

    as_account("conveyor-pipeline")
    cfg, deploy = _deploy_cfg()
    ctl = CanaryController(KubernetesInferenceServiceApi(), deploy.name, NAMESPACE, ready_timeout_s=20,
                           log=lambda _m: None)
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "aaa111")
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "bbb222")
    kubeconfig = as_account("conveyor-canary")
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    for verb in ("status", "pause", "resume", "rollback"):
        out = subprocess.run([sys.executable, "-m", "pipelines.kubectl_plugin", "canary", verb, deploy.name,
                              "-n", NAMESPACE, *(["-o", "json"] if verb == "status" else [])],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, (verb, out.stderr)
    assert json.loads(subprocess.run([sys.executable, "-m", "pipelines.kubectl_plugin", "canary", "status",
                                      deploy.name, "-n", NAMESPACE, "-o", "json"], capture_output=True, text=True,
                                     env=env, timeout=60).stdout)["phase"] == "RolledBack"
    seen = _assert_all_allowed(api_server, "conveyor-canary")
    assert ("patch", "serving.kserve.io", "inferenceservices", "") in seen


@pytest.mark.parametrize("strategy", ["ab", "shadow"])
def test_routed_release_calls_are_allowed_by_the_pipeline_and_canary_roles(strategy, api_server, as_account):
    """An A/B or shadow release through the real client: the pipeline step creates the candidate's
    InferenceService and the release HTTPRoute (checked by the stand-in against the upstream CRDs,
    CEL rules included); `kubectl conveyor rollout rollback`, as the canary account, restores the
    route and deletes the candidate's InferenceService."""
    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster import CanaryController, KubernetesRouteApi
    from components.stages.release.config import RolloutConfig

    as_account("conveyor-pipeline")
    cfg, deploy = _deploy_cfg()
    deploy = deploy.model_copy(update={"mode": "standard"})
    rollout = RolloutConfig(strategy=strategy, ab={"baseline": 0.9})
    ctl = CanaryController(KubernetesInferenceServiceApi(), deploy.name, NAMESPACE, ready_timeout_s=20,
                           log=lambda _m: None, routes=KubernetesRouteApi())
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "aaa111", rollout)
    ctl.deploy(deploy, cfg.canary, cfg.model_name, "bbb222", rollout)
    route = api_server.find("gateway.networking.k8s.io", "httproutes", NAMESPACE, f"{deploy.name}-release")
    assert route is not None
    assert api_server.find("serving.kserve.io", "inferenceservices", NAMESPACE, f"{deploy.name}-candidate")
    seen = _assert_all_allowed(api_server, "conveyor-pipeline")
    assert {("create", "gateway.networking.k8s.io", "httproutes", ""),
            ("create", "serving.kserve.io", "inferenceservices", "")} <= seen
    kubeconfig = as_account("conveyor-canary")
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    said = {}
    for verb in ("status", "rollback", "status"):
        out = subprocess.run([sys.executable, "-m", "pipelines.kubectl_plugin", "rollout", verb, deploy.name,
                              "-n", NAMESPACE], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, (verb, out.stderr)
        said.setdefault(verb, []).append(out.stdout)
    assert f"route: HTTPRoute {deploy.name}-release" in said["status"][0]  # the release runs on the route
    assert "route:" not in said["status"][1] and "RolledBack" in said["status"][1]  # over: the object is plain
    assert api_server.find("serving.kserve.io", "inferenceservices", NAMESPACE, f"{deploy.name}-candidate") is None
    restored = api_server.find("gateway.networking.k8s.io", "httproutes", NAMESPACE, f"{deploy.name}-release")
    assert [r["name"] for r in restored["spec"]["rules"]] == ["split"]
    seen = _assert_all_allowed(api_server, "conveyor-canary")
    assert {("patch", "gateway.networking.k8s.io", "httproutes", ""),
            ("delete", "serving.kserve.io", "inferenceservices", "")} <= seen


def test_the_plugin_takes_kubectls_kubeconfig_and_context_flags(api_server, as_account, tmp_path):
    """--kubeconfig and --context as kubectl takes them, with no $KUBECONFIG and no ~/.kube: the
    namespace comes from that context, and a context the file lacks is one clear line."""
    import yaml

    from components.cluster.deploy import KubernetesInferenceServiceApi
    from components.stages.release.cluster import CanaryController

    as_account("conveyor-pipeline")
    cfg, deploy = _deploy_cfg()
    CanaryController(KubernetesInferenceServiceApi(), deploy.name, NAMESPACE, ready_timeout_s=20,
                     log=lambda _m: None).deploy(deploy, cfg.canary, cfg.model_name, "aaa111")
    path = as_account("conveyor-canary")
    config = yaml.safe_load(Path(path).read_text())
    config["contexts"].append({"name": "elsewhere", "context": {"cluster": "standin", "user": "conveyor-canary",
                                                                "namespace": "nowhere"}})
    config["current-context"] = "elsewhere"
    (tmp_path / "team.kubeconfig").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}

    def plugin(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.kubectl_plugin", "rollout", "status", deploy.name,
                               "--kubeconfig", str(tmp_path / "team.kubeconfig"), *args],
                              capture_output=True, text=True, env=env, timeout=60)

    assert plugin("--context", "standin", "-o", "json").returncode == 0  # namespace: the context's
    assert json.loads(plugin("--context", "standin", "-o", "json").stdout)["namespace"] == NAMESPACE
    wrong_ns = plugin()  # the file's current context points at another namespace
    assert wrong_ns.returncode == 9 and f"InferenceService nowhere/{deploy.name}" in wrong_ns.stderr
    missing = plugin("--context", "no-such-context")
    assert missing.returncode == 9 and "no Kubernetes configuration" in missing.stderr and \
        missing.stderr.count("\n") == 1


def test_a_call_outside_the_role_is_forbidden_with_a_clear_error(api_server, as_account):
    from components.cluster.deploy import KubernetesInferenceServiceApi, apply_inference_service
    from components.cluster.isvc import build_inference_service

    as_account("conveyor-canary")  # may patch, not create
    cfg, deploy = _deploy_cfg()
    manifest = build_inference_service(deploy, cfg.model_name, "aaa111")
    with pytest.raises(ClusterError, match="403 Forbidden"):
        apply_inference_service(KubernetesInferenceServiceApi(), manifest, timeout_s=5, log=lambda _m: None)
    assert [c.status for c in api_server.calls_by(":conveyor-canary") if c.verb == "create"] == [403]


def test_api_server_semantics_the_code_depends_on(api_server, as_account):
    """Strategic merge patch is refused on custom resources (415), a stale resourceVersion is a
    conflict (409), an unknown field is refused under strict validation (400), and a watch the
    server ends early (max_watch_s) is resumed by the client until its own deadline."""
    from kubernetes import client, config

    from components.cluster.deploy import KubernetesInferenceServiceApi, wait_reconciled
    from components.cluster.isvc import build_inference_service

    as_account("conveyor-pipeline")
    cfg, deploy = _deploy_cfg()
    api = KubernetesInferenceServiceApi()
    created = api.create(build_inference_service(deploy, cfg.model_name, "aaa111"))
    config.load_kube_config()
    custom = client.CustomObjectsApi()
    with pytest.raises(client.exceptions.ApiException) as err:
        custom.api_client.call_api(
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{deploy.name}", "PATCH",
            header_params={"Content-Type": "application/strategic-merge-patch+json", "Accept": "application/json"},
            body={"spec": {"predictor": {"minReplicas": 2}}}, auth_settings=["BearerToken"], _preload_content=True)
    assert err.value.status == 415
    wait_reconciled(api, deploy.name, NAMESPACE, timeout_s=15)  # KServe wrote status: `created` is stale now
    with pytest.raises(ClusterError, match="409") as conflict:
        api.patch(deploy.name, NAMESPACE, {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                           "spec": {"predictor": {"minReplicas": 2}}})
    assert conflict.value.status == 409
    with pytest.raises(ClusterError, match="400"):
        api.patch(deploy.name, NAMESPACE, {"spec": {"predictor": {"minReplica": 2}}})
    # JSON patch is accepted as well
    patched = custom.api_client.call_api(
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{deploy.name}", "PATCH",
        header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
        body=[{"op": "replace", "path": "/spec/predictor/minReplicas", "value": 2}], auth_settings=["BearerToken"],
        response_type="object", _return_http_data_only=True)
    assert patched["spec"]["predictor"]["minReplicas"] == 2 and patched["metadata"]["generation"] == 2
    # the controller writes status 50 ms after each write; a 3 s wait spans several 1 s server watches
    api_server.controllers.pop("InferenceService")
    import threading

    threading.Timer(2.5, kserve_controller, args=(api_server, api_server.find(
        "serving.kserve.io", "inferenceservices", NAMESPACE, deploy.name))).start()
    ready = wait_reconciled(api, deploy.name, NAMESPACE, timeout_s=15)
    assert ready["status"]["observedGeneration"] == 2 and created["metadata"]["generation"] == 1
    watches = [c for c in api_server.calls if c.verb == "watch"]
    assert len(watches) >= 2  # the first watch ended before the status came: the client watched again


def test_a_search_without_the_rights_fails_with_one_clear_line(api_server, as_account):
    from components.stages.search.backends import run_search

    as_account("conveyor-canary")  # no rights on Katib experiments
    cfg = load_config().model_dump(mode="json", exclude_none=True)
    cfg["cluster"] = {**cfg["cluster"], "namespace": NAMESPACE}
    with pytest.raises(ClusterError, match=r"get Experiment kubeflow-user/.*403 Forbidden.*cannot get resource "
                                           r"\"experiments\" in API group \"kubeflow.org\""):
        run_search("katib", "s3://conveyor", "spamassassin", "v1", cfg, "rbac-run", log=lambda _m: None)


def test_alert_and_stop_records_its_event_with_the_pipeline_role(api_server, as_account, monkeypatch):
    """What notify_op does in its pod after posting the webhook: an Event on its own pod (named by
    KFP's KFP_POD_NAME/KFP_POD_NAMESPACE), allowed by the pipeline Role."""
    from components.cluster.kube import record_pod_event
    from components.stages.notify.executor import EVENT_REASONS, deliver

    as_account("conveyor-pipeline")
    monkeypatch.setenv("KFP_POD_NAME", "conveyor-training-x7k2p-notify-op")
    monkeypatch.setenv("KFP_POD_NAMESPACE", NAMESPACE)
    monkeypatch.delenv("CONVEYOR_NOTIFY_URL", raising=False)
    result = deliver("not_blessed", "run-9", "spam-classifier",
                     {"decision": "NOT_BLESSED", "candidate": "c2", "reasons": ["accuracy 0.81 < 0.9"]}, {})
    assert record_pod_event(EVENT_REASONS["not_blessed"], result["summary"], "conveyor-notify") == "recorded"
    assert _assert_all_allowed(api_server, "conveyor-pipeline") == {("create", "core", "events", "")}
    [event] = [o for (group, resource, ns, _name), o in api_server.objects.items() if resource == "events"]
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "conveyor-training-x7k2p-notify-op",
                                       "namespace": NAMESPACE}
    assert (event["reason"], event["source"]["component"], event["type"]) == (
        EVENT_REASONS["not_blessed"], "conveyor-notify", "Warning")
    assert "accuracy 0.81 < 0.9" in event["message"]
