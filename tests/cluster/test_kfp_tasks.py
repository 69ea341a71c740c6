"""The compiled pipelines (the golden YAML users upload: pipelines/compiled/) run by kfp.local's
DockerRunner against podman's Docker-compatible API: each task runs the compiled container
command (KFP's executor) in the component's own image, never in the host venv. The store is the
test's S3 server, reached over the host's loopback (network_mode host); the S3 keys come in as the
environment the pipelines take from the S3 Secret on a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.pod_runner import build

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "compiled"


RAN: list[dict] = []  # every task container: image, command, user, exit code


def _keep_containers_until_read(client, image, command, volumes, **run_args) -> int:
    """kfp.local's run_docker_container with auto_remove: podman removes the container before the
    runner asks for its status (and answers 500, not 404), and kfp counts a container it cannot
    find as exit 0 - a failed task would pass. Keep it until the exit code is read, then remove."""
    container = client.containers.run(image=image, command=command, detach=True, stdout=True, stderr=True,
                                      volumes=volumes, auto_remove=False, **run_args)
    try:
        code = container.wait()["StatusCode"]
        print(container.logs().decode(errors="replace"), end="")
        container.reload()
        RAN.append({"image": image, "command": command, "user": container.attrs["Config"].get("User"),
                    "image_id": container.attrs.get("Image"), "exit": code})
        return code
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def docker_api(tmp_path_factory):
    """podman's Docker-compatible API on a private socket (what DOCKER_HOST points the runner at)."""
    if build.engine() == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            env={**os.environ, **build.engine_env()}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sock.exists(), "podman system service did not start"
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def docker_runner(docker_api, s3_secret, tmp_path, monkeypatch):
    from kfp import local
    from kfp.local import docker_task_handler

    monkeypatch.setenv("DOCKER_HOST", docker_api)
    monkeypatch.setattr(docker_task_handler, "run_docker_container", _keep_containers_until_read)
    root = tmp_path / "pipeline-root"
    root.mkdir()
    root.chmod(0o1777)  # the tasks run as the images' non-root user and write their outputs here
    local.init(runner=local.DockerRunner(network_mode="host", environment=dict(s3_secret)),
               pipeline_root=str(root), raise_on_error=True)
    return root


def _upload_sources(store_uri: str, tmp_path: Path, n: int) -> list[str]:
    """A small labelled subset of the bundled SpamAssassin corpus as a source in S3."""
    from components.common.storage import open_store

    corpus = ROOT / "data" / "spamassassin" / "package" / "data"
    if not corpus.is_dir():
        pytest.fail("the bundled corpus is missing: run `make data` (make test-cluster does)")
    store = open_store(store_uri)
    keys = []
    for group in ("easy-ham-1", "spam-1"):
        for path in sorted((corpus / group).glob("*.txt"))[:n]:
            key = f"{group}/{path.name}"
            store.write_bytes(key, path.read_bytes())
            keys.append(key)
    return [store.url(group) for group in ("easy-ham-1", "spam-1")]


def _task_images(pipeline_yaml: Path) -> set[str]:
    import yaml

    spec = next(yaml.safe_load_all(pipeline_yaml.read_text()))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def test_data_pipeline_tasks_run_in_the_component_image(images, docker_runner, s3_prefix, tmp_path):
    from kfp import components

    from components.dataset import versioning

    assert _task_images(COMPILED / "conveyor-data.yaml") == {images["component"]["image"]}
    sources = _upload_sources(f"s3://sources/{s3_prefix.uri.rsplit('/', 1)[1]}", tmp_path, n=60)
    pipeline = components.load_component_from_file(str(COMPILED / "conveyor-data.yaml"))
    run = pipeline(sources=sources, dataset="spamassassin", store=s3_prefix.uri)
    version = run.output
    ref = versioning.resolve(s3_prefix, "spamassassin", version)
    assert ref is not None and ref.version == version
    manifest = json.loads(s3_prefix.read_bytes(versioning.manifest_key("spamassassin", version)))
    assert 100 <= manifest["rows"]["total"] <= 120, manifest["rows"]  # 120 mails read, a few quarantined
    _assert_ran_in_images(images, expected_tasks=4)  # ingest, report, split, featurize


def _assert_ran_in_images(images, expected_tasks: int) -> None:
    ran, RAN[:] = list(RAN), []
    assert len(ran) == expected_tasks, ran
    built = {v["image"]: build.image_id(v["image"]) for v in images.values()}
    for task in ran:
        assert task["exit"] == 0 and task["image"] in built, task
        assert task["image_id"].removeprefix("sha256:") == built[task["image"]].removeprefix("sha256:"), task
        assert task["user"] == "10001", task  # the image's non-root user, as in a pod
        assert "kfp.dsl.executor_main" in " ".join(task["command"])  # the compiled executor command


def test_training_pipeline_tasks_run_in_their_images(images, docker_runner, s3_prefix, tmp_path):
    """Data steps, the search (Optuna trials as processes inside the component container), the
    train step in the training image, register, evaluate, gate (infra validation starts a KServe
    server inside its container), staging (a KServe server of the candidate inside its container)
    and the first deployment, on a small subset."""
    from kfp import components

    from components.composition.config import load_config, run_config
    from components.stages.registry.store import aliases

    compiled = COMPILED / "conveyor-training.yaml"
    assert _task_images(compiled) == {images["component"]["image"], images["training"]["image"]}
    cfg = load_config().model_dump(mode="json", exclude_none=True)
    cfg["search"].update(max_trials=2, parallel_trials=1, max_failed_trials=0, early_stopping={"algorithm": "none"})
    cfg["train"].update(epochs=2, embed_dim=16)
    cfg["features"]["num_buckets"] = 16384
    sources = _upload_sources(f"s3://sources/{s3_prefix.uri.rsplit('/', 1)[1]}", tmp_path, n=120)
    pipeline = components.load_component_from_file(str(compiled))
    # a 240-mail subset trained for 2 epochs: absolute floors lowered; infra validation (a KServe
    # server in the gate's container answering like offline) stays required
    gate = {**cfg["gate"], "min_accuracy": 0.6, "min_macro_f1": 0.5, "max_ece": 0.5, "require_infra_validation": True}
    # each section goes in its own parameter, as on the KFP form (a copy in `config` that
    # disagreed with features_config would be refused)
    pipeline(sources=sources, store=s3_prefix.uri, search_backend="local", deploy_target="local",
             config=run_config(cfg), features_config=cfg["features"], gate_config=gate)
    # the pipeline body sits inside its exit handler, so the run has no single output: the
    # registry says what it registered and deployed
    named = aliases(s3_prefix, cfg["model_name"])
    # first deploy: staged (verified against its own test accuracy), entry granted, promoted
    assert named.get("candidate") and named.get("staging") == named.get("production") == named["candidate"], named
    # eleven steps (staging is one), and the exit handler's notify step (it posts nothing for a run
    # that succeeded); the Alert & Stop steps under dsl.If do not run for a blessed, promoted candidate
    _assert_ran_in_images(images, expected_tasks=12)
