"""Every compiled step that reads or writes the store reaches it on a cluster: the S3 Secret's keys
as env (encryption keys optional), the https endpoint's CA from its Secret, and the predictors'
token for the steps that replay traffic to them. No value of a secret is in the compiled YAML."""

from __future__ import annotations

import yaml
from kfp import compiler

from components.composition.config import config_from_dict
from pipelines.data_pipeline import ENCRYPTION_KEYS, S3_KEYS


def _compiled(tmp_path, cluster: dict) -> dict[str, dict]:
    from pipelines.data_pipeline import build_data_pipeline
    from pipelines.monitoring_pipeline import build_monitoring_pipeline
    from pipelines.release_pipeline import build_release_pipeline
    from pipelines.training_pipeline import build_training_pipeline

    cfg = config_from_dict({"cluster": cluster})
    out = {}
    for name, pipeline in (("data", build_data_pipeline(cfg)), ("training", build_training_pipeline(cfg)),
                           ("monitoring", build_monitoring_pipeline(cfg)), ("release", build_release_pipeline(cfg))):
        path = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        out[name] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _store_executors(docs: list[dict]) -> tuple[set[str], dict]:
    spec, platform = docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_store = {comp["executorLabel"] for comp in spec["components"].values()
                  if "store" in comp.get("inputDefinitions", {}).get("parameters", {})}
    return with_store, platform


def test_every_store_step_gets_the_s3_secret_the_ca_and_the_token_where_it_replays(tmp_path):
    compiled = _compiled(tmp_path, {"s3_ca_secret": "conveyor-s3-ca", "inference_token_secret": "conveyor-token"})
    replaying = set()
    for name, docs in compiled.items():
        with_store, platform = _store_executors(docs)
        assert with_store, name
        for executor in with_store:
            config = platform[executor]
            envs = [{e["envVar"] for e in s["keyToEnv"]} for s in config["secretAsEnv"]
                    if s["secretName"] == "conveyor-s3"]
            assert set(S3_KEYS) in envs and set(ENCRYPTION_KEYS) in envs, (name, executor)
            optional = {s["optional"] for s in config["secretAsEnv"] if {e["envVar"] for e in s["keyToEnv"]}
                        == set(ENCRYPTION_KEYS)}
            assert optional == {True}  # a Secret without encryption keys still starts the pod
            volumes = {v["secretName"]: v["mountPath"] for v in config["secretAsVolume"]}
            assert volumes["conveyor-s3-ca"] == "/etc/conveyor/s3-ca", (name, executor)
            if "conveyor-token" in volumes:
                replaying.add(executor.removeprefix("exec-").rstrip("-0123456789"))
    assert replaying == {"stage-op", "release-op"}
    text = (tmp_path / "training.yaml").read_text()
    assert "AWS_CA_BUNDLE" in text and "/etc/conveyor/s3-ca/ca.crt" in text
    assert "CONVEYOR_INFERENCE_TOKEN_FILE" in text


def test_without_a_ca_or_token_secret_only_the_s3_secret_is_added(tmp_path):
    compiled = _compiled(tmp_path, {})
    for name, docs in compiled.items():
        with_store, platform = _store_executors(docs)
        for executor in with_store:
            assert "secretAsVolume" not in platform[executor], (name, executor)
            assert platform[executor]["secretAsEnv"][0]["secretName"] == "conveyor-s3"
