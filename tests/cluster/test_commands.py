"""Katib trials, the predictor, the monitoring CronJob and the `helm test` hook, each run from its
manifest in its own image (tests/support/pod_runner.py), never in the host venv."""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.common.config import ClusterConfig
from components.stages.search.katib import build_experiment
from components.stages.search.spec import parse_spec
from tests.standins.kubernetes.custom_resources import validate_custom
from tests.support.katib_trial import (
    feasible_point,
    metric_names,
    parse_stdout,
    primary_container,
    trainjob_node_pod,
    trial_run_spec,
)
from tests.support.pod_runner import PodEnv, run_pod_container, start_pod_container, stop_container

ROOT = Path(__file__).resolve().parents[2]
SECRET = "conveyor-s3"  # ClusterConfig.s3_secret and the chart's default


def _toy_version(tmp_path, store) -> str:
    from tests.support.training_data import ingest_corpus

    return ingest_corpus(tmp_path, store, n=400)


@pytest.mark.parametrize("kind", ["Job", "TrainJob", "PyTorchJob"])
def test_katib_trial_runs_in_the_training_image_and_reports_every_epoch(kind, images, s3_prefix, s3_secret,
                                                                        tmp_path):
    """The trial's primary pod as Katib's metrics-collector webhook leaves it (tests/support/katib_trial.py:
    the command joined into one `sh -c` script with its output redirected to
    /var/log/katib/metrics.log, the metrics emptyDir mounted, the completion mark), the kubelet's
    `$(VAR)`/`$$` expansion, run in the training image. Job: one process. TrainJob: the node pod as
    the torch runtime renders it (PET_* topology: 1 node x 2 processes), so torchrun runs DDP with
    gloo inside the image. PyTorchJob: the Master, torchrun with the defaults of a one-node job.
    Categorical values with brackets and commas and the whole run config go through the shell."""
    from tests.support.katib_trial import METRICS_VOLUME, completion_marks, pytorchjob_pod, wrap_primary_pod
    from tests.support.training_data import TWO_TRIAL_SEARCH, small_config

    store = s3_prefix
    version = _toy_version(tmp_path, store)
    run_cfg = small_config(epochs=3, patience=3).model_dump(mode="json", exclude_none=True)
    run_cfg["search"] = copy.deepcopy(TWO_TRIAL_SEARCH)
    cluster = ClusterConfig(trial_kind=kind, s3_secret=SECRET, gpus_per_trial=0,
                            procs_per_node=2 if kind == "TrainJob" else 1)
    experiment = build_experiment(parse_spec(run_cfg["search"]), run_id="ct", dataset="toy", version=version,
                                  store=store.uri, cluster=cluster, config=run_cfg)
    validate_custom(experiment)  # the upstream CRD, Katib's webhook and (PyTorchJob) the training operator's
    trial = f"ct-{kind.lower()}-1"
    run_spec = trial_run_spec(experiment, feasible_point(experiment, "max"), trial)
    assert primary_container(experiment, run_spec)["image"] == images["training"]["image"]
    pod = {"Job": lambda: run_spec["spec"]["template"],
           "TrainJob": lambda: trainjob_node_pod(run_spec, master_port=_free_port()),
           "PyTorchJob": lambda: pytorchjob_pod(run_spec, "Master")}[kind]()
    pod = wrap_primary_pod(experiment, pod)
    container = next(c for c in pod["spec"]["containers"]
                     if c["name"] == experiment["spec"]["trialTemplate"]["primaryContainerName"])
    assert container["command"] == ["sh", "-c"], "Katib's webhook did not select this pod"
    metrics_dir = tmp_path / "katib"
    out = run_pod_container(pod["spec"], container, PodEnv(secrets={SECRET: s3_secret}), timeout=600,
                            empty_dirs={METRICS_VOLUME: metrics_dir})
    log = (metrics_dir / "metrics.log").read_text()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:] + log[-3000:]
    assert completion_marks(metrics_dir) == ["completed"]
    logs = parse_stdout(log, metric_names(experiment))
    objective = [entry for entry in logs if entry.name == experiment["spec"]["objective"]["objectiveMetricName"]]
    assert len(objective) == 3 and "unavailable" not in {entry.value for entry in objective}, log
    stamps = [entry.timestamp for entry in objective]
    assert "0001-01-01T00:00:00Z" not in stamps and stamps == sorted(set(stamps)), stamps
    record = json.loads(store.read_bytes(f"runs/{trial}.json"))
    assert record["params"]["train"]["lr"] == 0.05 and record["params"]["train"]["embed_dim"] == 16
    assert record["params"]["features"]["word_ngrams"] == [1, 2]
    assert record["params"]["features"]["num_buckets"] == 4096  # the run's config, not a default file
    assert record["image"] == images["training"]["image"]
    assert record["distributed"]["world_size"] == (2 if kind == "TrainJob" else 1)
    print(f"{kind} trial: {len(logs)} observations parsed, objective {[entry.value for entry in objective]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"predictor container exited {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout} s")


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A registered version folder, as KServe's storage initializer leaves it at /mnt/models."""
    from components.common.storage import FileStore
    from tests.support.training_data import ingest_corpus, train_and_register

    tmp = tmp_path_factory.mktemp("model")
    store = FileStore(str(tmp / "store"))
    card = train_and_register(store, ingest_corpus(tmp, store, n=400), "served-run", alias="champion")
    folder = Path(store.root) / "models" / card["name"] / card["version"]
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return card, folder


def _runtime_container(model_name: str) -> tuple[dict, dict]:
    runtime = yaml.safe_load((ROOT / "manifests" / "servingruntime.yaml").read_text())
    container = json.loads(json.dumps(runtime["spec"]["containers"][0]).replace("{{.Name}}", model_name))
    # KServe adds the storage initializer's emptyDir (the test mounts the model folder in its place)
    pod = {"securityContext": {}, "volumes": runtime["spec"].get("volumes", [])}
    return pod, container


@contextlib.contextmanager
def _serving(pod: dict, container: dict, folder, name: str):
    """The predictor container serving the version folder (as KServe's storage initializer leaves
    it at /mnt/models) on a free loopback port, ready; yields its base URL."""
    port = _free_port()
    inner = container["ports"][0]["containerPort"]
    proc, running = start_pod_container(pod, container, extra_mounts=[f"{folder}:/mnt/models:ro"],
                                        ports={inner: port}, name=f"{name}-{port}")
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/v2/health/ready", proc)
        yield base
    finally:
        stop_container(running)
        proc.wait(timeout=30)


def test_predictor_image_serves_v1_and_v2_read_only_as_non_root(images, model_folder):
    card, folder = model_folder
    pod, container = _runtime_container(card["name"])
    assert container["image"] == images["predictor"]["image"]
    with _serving(pod, container, folder, "conveyor-predictor") as base:
        code, v1 = _post(f"{base}/v1/models/{card['name']}:predict", {"instances": ["free cash prize now"]})
        assert code == 200 and v1["model_version"] == card["version"], v1
        code, v2 = _post(f"{base}/v2/models/{card['name']}/infer", {"inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["meeting notes", "winner lottery"]}]})
        assert code == 200 and len(v2["outputs"][0]["data"]) == 2, v2
        code, bad = _post(f"{base}/v1/models/{card['name']}:predict", {"instances": [42]})
        assert code == 400, bad
        code, explained = _post(f"{base}/v1/models/{card['name']}:explain", {"instances": ["free cash prize now"]})
        assert code == 200 and explained["explanations"][0]["label"] == v1["predictions"][0]["label"], explained
        assert explained["explanations"][0]["complete"] and explained["explanations"][0]["tokens"], explained
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert f'version="{card["version"]}"' in metrics


def _chart(values: dict) -> list[dict]:
    from tests.integration.test_chart import _render

    return _render(values)


def test_helm_test_hook_runs_in_its_image_against_the_predictor_image(images, model_folder):
    card, folder = model_folder
    objects = _chart({"model": {"name": card["name"], "version": card["version"]},
                      "s3": {"accessKeyId": "k", "secretAccessKey": "s"}})
    hook = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == "conveyor-test-predictor")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    check = hook["spec"]["containers"][0]
    assert check["image"] == images["component"]["image"]
    url = next(e["value"] for e in check["env"] if e["name"] == "URL")
    service = url.split("//", 1)[1]
    pod, container = _runtime_container(card["name"])
    port = 8080  # the hook's URL has no port: the Service's port 80 in front of 8080; here the container's own
    proc, name = start_pod_container(pod, container, extra_mounts=[f"{folder}:/mnt/models:ro"],
                                     name="conveyor-helm-test-predictor")
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)
        check = json.loads(json.dumps(check).replace(url, f"http://{service}:{port}"))
        out = run_pod_container(hook["spec"], check, PodEnv(hosts={service: "127.0.0.1"}), timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"from {card['version']}" in out.stdout
    finally:
        stop_container(name)
        proc.wait(timeout=30)


def test_the_predictor_behind_the_charts_token_refuses_without_it_and_the_helm_test_sends_it(images, model_folder):
    """predictor.auth.tokenSecret: the chart's ServingRuntime container, with the Secret mounted as
    the kubelet mounts it, answers 401 without the token; the `helm test` hook, run in its image with
    the same Secret, sees the 401, then gets its prediction with the token."""
    card, folder = model_folder
    token = "helm-test-token-" + "5e" * 8
    objects = _chart({"model": {"name": card["name"], "version": card["version"]},
                      "s3": {"accessKeyId": "k", "secretAccessKey": "s"},
                      "predictor": {"auth": {"tokenSecret": "conveyor-inference-token"}}})
    runtime = next(o for o in objects if o["kind"] == "ServingRuntime")
    container = json.loads(json.dumps(runtime["spec"]["containers"][0]).replace("{{.Name}}", card["name"]))
    container["image"] = images["predictor"]["image"]
    pod = {"securityContext": {}, "volumes": runtime["spec"]["volumes"]}
    secrets = PodEnv(secrets={"conveyor-inference-token": {"token": token + "\n"}})
    hook = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == "conveyor-test-predictor")
    check = hook["spec"]["containers"][0]
    url = next(e["value"] for e in check["env"] if e["name"] == "URL")
    service = url.split("//", 1)[1]
    port = _free_port()
    proc, name = start_pod_container(pod, container, secrets, extra_mounts=[f"{folder}:/mnt/models:ro"],
                                     ports={8080: port}, name=f"conveyor-token-predictor-{port}")
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)  # health stays open
        code, refused = _post(f"http://127.0.0.1:{port}/v1/models/{card['name']}:predict", {"instances": ["hi"]})
        assert code == 401, refused
        check = json.loads(json.dumps(check).replace(url, f"http://{service}:{port}"))
        out = run_pod_container(hook["spec"], check, PodEnv(secrets=secrets.secrets, hosts={service: "127.0.0.1"}),
                                timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"from {card['version']}" in out.stdout
    finally:
        stop_container(name)
        proc.wait(timeout=30)


def test_helm_test_store_hook_runs_in_its_image_against_the_store(images, s3_prefix, s3_secret):
    """The hook `helm test` runs with or without a model: the store answers with the S3 Secret."""
    objects = _chart({"s3": {"bucket": "conveyor"}})
    hook = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == "conveyor-test-store")
    check = hook["spec"]["containers"][0]
    assert check["image"] == images["component"]["image"]
    secret = check["envFrom"][0]["secretRef"]["name"]
    out = run_pod_container(hook["spec"], check, PodEnv(secrets={secret: s3_secret}), timeout=120)
    assert out.returncode == 0 and "store s3://conveyor answers at http://127.0.0.1:" in out.stdout, out.stderr
    wrong = run_pod_container(hook["spec"], check, PodEnv(secrets={secret: {**s3_secret,
                                                                            "AWS_SECRET_ACCESS_KEY": "wrong"}}),
                              timeout=120)
    assert wrong.returncode == 4 and "credentials refused" in wrong.stderr, wrong.stderr


def test_monitoring_cronjob_runs_in_its_image(images, s3_prefix, s3_secret, tmp_path):
    from components.stages.registry.store import set_alias
    from tests.support.training_data import ingest_corpus, train_and_register

    store = s3_prefix
    version = ingest_corpus(tmp_path, store, n=400)
    card = train_and_register(store, version, "monitored-run", alias="champion")
    set_alias(store, card["name"], "champion", card["version"])
    objects = _chart({"model": {"name": card["name"]}, "s3": {"bucket": "conveyor", "accessKeyId": "k",
                                                             "secretAccessKey": "s"}})
    cron = next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"].endswith("-monitor"))
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("monitor-config"))
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == images["component"]["image"]
    # the chart's store is the bucket root; this test's store is a prefix in it
    container = {**container, "command": [store.uri if c == "s3://conveyor" else c for c in container["command"]]}
    secret = pod["containers"][0]["envFrom"][0]["secretRef"]["name"]
    out = run_pod_container(pod, container, PodEnv(secrets={secret: s3_secret},
                                                   config_maps={config["metadata"]["name"]: config["data"]}),
                            timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(out.stdout[-1500:])


def test_the_release_job_runs_a_decision_in_its_image(images, s3_prefix, s3_secret, tmp_path):
    """The Job `kubectl conveyor reject` creates from the chart's release-job template, run as the
    kubelet would run it: the decision recorded in the store's audit log with the person's identity
    (from the Job's environment) and the Job's ServiceAccount (downward API); then the same Job
    again, refused (exit 10) because the decision is final."""
    from components.common import audit
    from components.stages.release import environments as envs_
    from components.stages.release.cluster_approval import decision_job
    from components.stages.release.config import EnvironmentConfig
    from tests.support.training_data import ingest_corpus, train_and_register

    store = s3_prefix
    version = ingest_corpus(tmp_path, store, n=400)
    card = train_and_register(store, version, "staged-run", alias="candidate")
    audit.append(store, "gate_decision", {"model": card["name"], "version": card["version"]},
                 {"decision": "BLESSED", "reasons": []})
    envs_.record_verification(store, card["name"], card["version"], "staging",
                              {"passed": True, "reason": "2 passing intervals", "stable": None})
    envs_.request_approval(store, card["name"], card["version"],
                           EnvironmentConfig(name="production", approval="manual"), {"env": "staging"})
    objects = _chart({"model": {"name": card["name"]}, "s3": {"bucket": "conveyor", "accessKeyId": "k",
                                                             "secretAccessKey": "s"}})
    template = next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"].endswith("-release"))
    template["metadata"].setdefault("namespace", "kubeflow-user")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("release-config"))
    job = decision_job(template, "reject", card["name"], card["version"], "production", "too slow on long mails",
                       {"username": "alice@example.com", "groups": ["ml-release-managers"]})
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == images["component"]["image"]
    container = {**container, "command": [store.uri if c == "s3://conveyor" else c for c in container["command"]]}
    secret = container["envFrom"][0]["secretRef"]["name"]
    env = PodEnv(secrets={secret: s3_secret}, config_maps={config["metadata"]["name"]: config["data"]})
    out = run_pod_container(pod, container, env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "rejected by alice@example.com" in out.stdout
    rejected = next(e for e in audit.read_entries(store) if e["event"] == "approval_rejected")
    assert rejected["actor"]["name"] == "alice@example.com"
    assert rejected["actor"]["service_account"] == pod["serviceAccountName"]
    again = run_pod_container(pod, container, env, timeout=300)
    assert again.returncode == 10 and "already rejected" in again.stderr, again.stderr[-2000:]


def test_spark_application_driver_runs_in_the_component_image_and_gives_the_local_version(images, s3_prefix,
                                                                                          s3_secret, tmp_path):
    """The SparkApplication's driver as Spark on Kubernetes starts it (the image's entrypoint with
    `driver`, spark-submit in client mode, the manifest's main file and arguments, the S3 secret
    from envFrom), with `--master local[2]` because no Kubernetes master runs here: Java, pyspark,
    the Python data source writer and the store's S3 client all run inside the image."""
    from components.common.config import SparkConfig
    from components.common.storage import FileStore
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.executor import ingest
    from components.stages.ingest.spark_launcher import IngestJob, spark_application
    from tests.support.malformed import write_mail_folder

    write_mail_folder(tmp_path / "mail")
    for path in sorted((tmp_path / "mail").rglob("*")):
        if path.is_file():
            s3_prefix.upload(str(path), f"raw/mail/{path.relative_to(tmp_path / 'mail')}")
    cleaning = CleaningConfig(min_chars=5, max_chars=20_000, labels=["ham", "spam"])
    job = IngestJob([f"{s3_prefix.uri}/raw/mail"], "mail", s3_prefix.uri, SourceSettings().model_dump(mode="json"),
                    cleaning.model_dump(mode="json"))
    app = spark_application("cluster-test", job, SparkConfig(), ClusterConfig(), images["component"]["image"])
    spec = app["spec"]
    main = spec["mainApplicationFile"].removeprefix("local://")
    container = {"name": "spark-kubernetes-driver", "image": spec["image"], "envFrom": spec["driver"]["envFrom"],
                 "args": ["driver", "--master", "local[2]",
                          *[a for k, v in spec["sparkConf"].items() for a in ("--conf", f"{k}={v}")],
                          main, *spec["arguments"]],
                 "securityContext": {"runAsUser": 10001, "runAsNonRoot": True, "allowPrivilegeEscalation": False}}
    out = run_pod_container({}, container, PodEnv(secrets={SECRET: s3_secret}), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = s3_prefix.read_json(spec["arguments"][-1])
    local = ingest([str(tmp_path / "mail")], "mail", FileStore(str(tmp_path / "local")), SourceSettings(), cleaning)
    assert result["new"] and result["version"] == local.version
    assert result["quarantine_reasons"] == local.quarantine_reasons and result["rows_read"] == local.rows_read


def test_ingest_workers_start_in_the_component_image_under_a_cpu_limit(images, s3_prefix, s3_secret, tmp_path):
    """The ingest step's worker processes in the component image, as uid 10001 with the S3 secret:
    two workers give the local one-worker version; `data.workers` left to its default follows the
    pod's CPU limit (1 here, so the step cleans in its own process)."""
    from components.common.storage import FileStore
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.executor import ingest
    from tests.support.malformed import write_mail_folder

    write_mail_folder(tmp_path / "mail")
    for path in sorted((tmp_path / "mail").rglob("*")):
        if path.is_file():
            s3_prefix.upload(str(path), f"raw/mail/{path.relative_to(tmp_path / 'mail')}")
    cleaning = CleaningConfig(min_chars=5, max_chars=20_000, labels=["ham", "spam"])
    script = (
        "import json, sys\n"
        "from components.common.storage import open_store\n"
        "from components.stages.ingest.config import CleaningConfig, SourceSettings\n"
        "from components.stages.ingest.executor import ingest\n"
        "from components.stages.ingest.workers import usable_cores\n"
        "store, source, cleaning = sys.argv[1], sys.argv[2], CleaningConfig.model_validate_json(sys.argv[3])\n"
        "runs = {w: ingest([source], f'mail-{w or 0}', open_store(store), SourceSettings(), cleaning, workers=w,\n"
        "                  parallel_min_bytes=0) for w in (2, None)}\n"
        "print(json.dumps({'cores': usable_cores(), **{str(w): [r.version, r.workers, r.rows_read,\n"
        "                  r.quarantine_reasons] for w, r in runs.items()}}))\n")
    container = {"name": "ingest", "image": images["component"]["image"], "command": ["python", "-c", script],
                 "args": [s3_prefix.uri, f"{s3_prefix.uri}/raw/mail", cleaning.model_dump_json()],
                 "envFrom": [{"secretRef": {"name": SECRET}}], "resources": {"limits": {"cpu": "1"}},
                 "securityContext": {"runAsUser": 10001, "runAsNonRoot": True, "allowPrivilegeEscalation": False}}
    out = run_pod_container({}, container, PodEnv(secrets={SECRET: s3_secret}), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    local = ingest([str(tmp_path / "mail")], "mail", FileStore(str(tmp_path / "local")), SourceSettings(), cleaning,
                   workers=1)
    assert result["cores"] == 1  # limits.cpu 1, though the node has more
    assert result["2"] == [local.version, 2, local.rows_read, local.quarantine_reasons]
    assert result["None"] == [local.version, 1, local.rows_read, local.quarantine_reasons]


def _driver_container(app: dict) -> dict:
    """A SparkApplication's driver as Spark on Kubernetes starts it, `--master local[2]` (no
    Kubernetes master runs here)."""
    spec = app["spec"]
    return {"name": "spark-kubernetes-driver", "image": spec["image"], "envFrom": spec["driver"]["envFrom"],
            "args": ["driver", "--master", "local[2]",
                     *[a for k, v in spec["sparkConf"].items() for a in ("--conf", f"{k}={v}")],
                     spec["mainApplicationFile"].removeprefix("local://"), *spec["arguments"]],
            "securityContext": {"runAsUser": 10001, "runAsNonRoot": True, "allowPrivilegeEscalation": False}}


def test_featurize_spark_application_driver_runs_in_the_component_image(images, s3_prefix, s3_secret, tmp_path):
    """The featurize step's SparkApplication driver in the component image: it reads the staged split
    files from S3 by row-group ranges, fits (vocabulary as a Spark aggregation) and encodes with Spark
    tasks, and publishes the feature cache entry, equal to the in-process step's."""
    from components.common.config import SparkConfig
    from components.common.storage import FileStore
    from components.dataset import versioning as v
    from components.stages.featurize.engines import FeaturizeJob, spark_application
    from components.stages.featurize.executor import featurize_split_files
    from components.stages.split.config import SplitConfig
    from components.stages.split.executor import split_to_files
    from tests.support.training_data import ingest_corpus

    local_store = FileStore(str(tmp_path / "local"))
    version = ingest_corpus(tmp_path, local_store, n=400)
    rows = {s: str(tmp_path / f"{s}-rows.parquet") for s in ("train", "validation", "test")}
    split_to_files(local_store, v.resolve(local_store, "toy", version), SplitConfig(), rows, batch_rows=40)
    features = {"kind": "vocabulary", "min_freq": 2, "num_buckets": 3000}
    meta = {"dataset": "toy", "version": version, "split": SplitConfig().model_dump(mode="json")}
    paths = {s: str(tmp_path / f"{s}.parquet") for s in rows}
    local = featurize_split_files(local_store.uri, rows, meta, features, str(tmp_path / "featurizer.json"), paths)
    staged = {}
    for split, path in rows.items():
        staged[split] = f"staged/{split}.parquet"
        s3_prefix.upload(path, staged[split])
    job = FeaturizeJob(s3_prefix.uri, "toy", version, meta["split"], local["features"], staged)
    app = spark_application("cluster-test", job, SparkConfig(), ClusterConfig(), images["component"]["image"])
    out = run_pod_container({}, _driver_container(app), PodEnv(secrets={SECRET: s3_secret}), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = s3_prefix.read_json(app["spec"]["arguments"][-1])
    prefix = result["cache"][len(s3_prefix.uri) + 1:]
    assert s3_prefix.read_bytes(f"{prefix}/featurizer.json") == (tmp_path / "featurizer.json").read_bytes()
    assert result["stats"] == local["stats"]


def test_a_candidate_predictor_serves_under_the_stables_name_as_kserve_merges_its_env(images, model_folder):
    """An A/B or shadow candidate's own InferenceService sets CONVEYOR_SERVED_NAME and CONVEYOR_ROLE
    in its model env; KServe merges a predictor's env into the runtime container by name
    (MergeRuntimeContainers: a strategic merge, `env` keyed by name), so the candidate answers under
    the stable's name and labels its metrics role="canary"."""
    from components.cluster.deploy_config import DeployConfig
    from components.stages.release.cluster import CanaryController
    from components.stages.release.config import CanaryConfig, RolloutConfig
    from tests.standins.kubernetes.objects import CustomObjects, InferenceServices

    card, folder = model_folder
    api = InferenceServices()
    ctl = CanaryController(api, "spam", "team-a", ready_timeout_s=5, log=lambda _m: None, routes=CustomObjects())
    deploy = DeployConfig(name="spam", namespace="team-a", mode="standard", store="s3://models")
    rollout = RolloutConfig(strategy="shadow")
    ctl.deploy(deploy, CanaryConfig(), card["name"], "v0", rollout)
    ctl.deploy(deploy, CanaryConfig(), card["name"], card["version"], rollout)
    isvc_env = api.get("spam-candidate", "team-a")["spec"]["predictor"]["model"]["env"]
    pod, container = _runtime_container("spam-candidate")  # KServe fills {{.Name}} with the candidate's name
    by_name = {e["name"]: e for e in container["env"]}
    by_name.update({e["name"]: e for e in isvc_env})  # the strategic merge by name: the InferenceService's wins
    container = {**container, "env": list(by_name.values())}
    with _serving(pod, container, folder, "conveyor-candidate") as base:
        code, v1 = _post(f"{base}/v1/models/spam:predict", {"instances": ["free cash prize now"]})
        assert code == 200 and v1["model_version"] == card["version"], v1
        assert _post(f"{base}/v1/models/spam-candidate:predict", {"instances": ["x"]})[0] == 404
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'role="canary"' in metrics and 'role="stable"' not in metrics
