"""The data pipeline compiled by the real KFP compiler and run by kfp.local against real S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.common.errors import NotFoundError
from components.composition.config import ConveyorConfig, config_from_dict
from pipelines.compile import compile_all
from tests.support.paths import ROOT


def test_compile_writes_pipeline_yaml_and_k8s_resources(tmp_path):
    from kfp import components as kfp_components

    written = compile_all(str(tmp_path), k8s=True)["compiled"]
    spec = next(yaml.safe_load_all(Path(written["conveyor-data"]).read_text()))
    assert spec["pipelineInfo"]["name"] == "conveyor-data"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest-op", "report-op", "split-op", "featurize-op"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"ghcr.io/conveyor-mlops/conveyor-component:0.1.0"}
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["cleaning"]["defaultValue"]["labels"] == ["ham", "spam"]
    kfp_components.load_component_from_file(written["conveyor-data"])  # the SDK reloads it

    docs = list(yaml.safe_load_all(Path(written["conveyor-data (k8s)"]).read_text()))
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [
        ("pipelines.kubeflow.org/v2beta1", "Pipeline"), ("pipelines.kubeflow.org/v2beta1", "PipelineVersion")]


def test_monitoring_and_continuous_training_pipelines_compile(tmp_path):
    from kfp import components as kfp_components

    written = compile_all(str(tmp_path), k8s=True)["compiled"]
    monitoring = next(yaml.safe_load_all(Path(written["conveyor-monitoring"]).read_text()))
    tasks = monitoring["root"]["dag"]["tasks"]
    assert set(tasks) == {"monitor-op", "condition-1"}
    assert tasks["condition-1"]["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--monitor-op-action'] == 'retrain'"
    assert set(monitoring["components"]["comp-condition-1"]["dag"]["tasks"]) == {"submit-retraining-op"}
    outputs = monitoring["components"]["comp-monitor-op"]["outputDefinitions"]["artifacts"]
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    ct = next(yaml.safe_load_all(Path(written["conveyor-continuous-training"]).read_text()))
    assert set(ct["root"]["dag"]["tasks"]) == {"exit-handler-1", "exit-notify-op"}
    ct_tasks = set(ct["components"]["comp-exit-handler-1"]["dag"]["tasks"])
    assert "tune-op" not in ct_tasks and {"ingest-op", "train-op", "gate-op", "condition-3"} <= ct_tasks
    assert ct["root"]["inputDefinitions"]["parameters"]["sources"]["defaultValue"][0].endswith("easy-ham-2")
    for name in ("conveyor-monitoring", "conveyor-continuous-training"):
        kfp_components.load_component_from_file(written[name])  # the SDK reloads it
        kinds = [d["kind"] for d in yaml.safe_load_all(Path(written[f"{name} (k8s)"]).read_text())]
        assert kinds == ["Pipeline", "PipelineVersion"]


def test_local_run_through_kfp_local_against_s3(tmp_path, s3_env, monkeypatch):
    """kfp.local runs every component as a subprocess; outputs land in the real S3 store."""
    from tests.support.malformed import write_mail_folder

    expected = write_mail_folder(tmp_path / "mail")
    cfg = config_from_dict({
        "data": {"dataset": "mini", "reference": [str(tmp_path / "mail")]},
        "cleaning": {"min_chars": 5, "max_chars": 20000, "labels": ["ham", "spam"]},
        "split": {"validation": 0.2, "test": 0.2},
    })
    config_path = tmp_path / "mini.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    from pipelines.local_run import run_local

    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")  # inherited by every kfp.local task
    summary = run_local(config_path=str(config_path), store="s3://conveyor/pipeline-test",
                        workdir=str(tmp_path / "runs"), progress=lambda _m: None)
    # every step's own lines are JSON objects a log stack can parse (kfp's executor adds its own)
    records = {}
    for line in Path(summary["task_log"]).read_text().splitlines():
        if line.strip().startswith('{"time"'):  # kfp.local indents a task's output
            record = json.loads(line)
            records[record["step"]] = record
    assert {"split", "report"} <= set(records), sorted(records)
    assert records["split"]["fields"]["dataset"] == "mini" and records["split"]["level"] == "info"
    step = summary["steps"][0]
    assert step["ingest"]["rows_read"] == len(expected) == 17
    assert step["ingest"]["rows_accepted"] == sum(reason is None for reason in expected.values()) == 7
    assert step["ingest"]["manifest_uri"].startswith("s3://conveyor/pipeline-test/datasets/mini/")
    assert sum(step["split"].values()) == 7
    assert step["features"]["num_ids"] == ConveyorConfig().features.num_buckets
    assert Path(step["report"]["html"]).read_text().startswith("<!doctype html>")
    saved = json.loads(Path(summary["summary_path"]).read_text())
    assert saved["steps"][0]["ingest"]["version"] == step["ingest"]["version"]


def test_a_failing_step_surfaces_the_components_own_message(tmp_path, s3_env):
    from components.common.errors import InputError
    from pipelines.local_run import run_local

    config_path = tmp_path / "bad.yaml"
    config_path.write_text(yaml.safe_dump({"data": {"dataset": "x", "reference": [str(tmp_path / "absent")]}}))
    (tmp_path / "absent").mkdir()
    with pytest.raises(InputError, match=r"reference data pipeline: .*absent: no such file or folder"):
        run_local(config_path=str(config_path), store="s3://conveyor/fail-test", workdir=str(tmp_path / "runs"),
                  progress=lambda _m: None)


def test_the_compiled_pipeline_carries_the_configured_release_strategy(tmp_path):
    config = tmp_path / "bluegreen.yaml"
    bundled = yaml.safe_load((ROOT / "configs" / "spamassassin.yaml").read_text())
    config.write_text(yaml.safe_dump({**bundled, "rollout": {"strategy": "bluegreen",
                                                             "bluegreen": {"auto_promote": False}}}))
    written = compile_all(str(tmp_path / "out"), config_path=str(config))["compiled"]
    spec, _platform = yaml.safe_load_all(Path(written["conveyor-training"]).read_text())
    rollout = spec["root"]["inputDefinitions"]["parameters"]["rollout_config"]["defaultValue"]
    assert rollout["strategy"] == "bluegreen" and rollout["bluegreen"]["auto_promote"] is False
    granted = spec["components"]["comp-condition-6"]["dag"]["tasks"]
    assert granted["release-op"]["taskInfo"]["name"] == "production release (bluegreen): analysis, promote or roll back"


def test_compiled_training_pipeline_and_experiment_carry_gpu_settings(tmp_path):
    written = compile_all(str(tmp_path))["compiled"]
    spec, platform = yaml.safe_load_all(Path(written["conveyor-training"]).read_text())
    root = spec["root"]["dag"]["tasks"]
    # Alert & Stop: every step inside an exit handler whose exit task reports a failed run
    assert set(root) == {"exit-handler-1", "exit-notify-op"}
    assert root["exit-notify-op"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert {"ingest-op", "report-op", "split-op", "featurize-op", "tune-op", "train-op", "register-op",
            "evaluate-op", "gate-op", "condition-2", "condition-3"} == set(tasks)
    not_blessed, blessed = tasks["condition-2"], tasks["condition-3"]
    assert not_blessed["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--gate-op-Output'] == false"
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"notify-op"}
    assert blessed["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-op-Output'] == true"
    # blessed: staging first; then a stop (failed, awaiting approval) or the production release
    blessed_tasks = spec["components"]["comp-condition-3"]["dag"]["tasks"]
    assert set(blessed_tasks) == {"stage-op", "condition-4", "condition-5", "condition-6"}
    branches = {t: blessed_tasks[t]["triggerPolicy"]["condition"]
                for t in ("condition-4", "condition-5", "condition-6")}
    assert branches == {f"condition-{i}": f"inputs.parameter_values['pipelinechannel--stage-op-Output'] == '{v}'"
                        for i, v in ((4, "failed"), (5, "awaiting_approval"), (6, "release"))}
    assert set(spec["components"]["comp-condition-6"]["dag"]["tasks"]) == {"release-op", "condition-7"}
    assert spec["components"]["comp-condition-7"]["dag"]["tasks"]["notify-op-4"]["inputs"]["artifacts"][
        "record"] == {"componentInputArtifact": "pipelinechannel--release-op-deployment"}
    assert spec["components"]["comp-condition-6"]["dag"]["tasks"]["condition-7"]["triggerPolicy"]["condition"] \
        == "inputs.parameter_values['pipelinechannel--release-op-Output'] != 'Promoted'"
    assert spec["components"]["comp-condition-5"]["dag"]["tasks"]["notify-op-3"]["inputs"]["parameters"]["event"] \
        == {"runtimeValue": {"constant": "awaiting_approval"}}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for alert in ("exec-notify-op", "exec-notify-op-2", "exec-notify-op-3", "exec-notify-op-4",
                  "exec-exit-notify-op"):  # the URL only from the Secret
        assert executors[alert]["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "CONVEYOR_NOTIFY_URL", "secretKey": "url"}]
        assert executors[alert]["secretAsEnv"][0]["optional"] is True
    assert tasks["tune-op"]["cachingOptions"] == {} or not tasks["tune-op"]["cachingOptions"].get("enableCache")
    train = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == "nvidia.com/gpu" and train["accelerator"]["resourceCount"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-op"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {s["secretName"] for s in k8s["secretAsEnv"]} == {"conveyor-s3"}
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["deploy_target"]["defaultValue"] == "kserve"  # the cluster pipeline rolls out on KServe
    assert inputs["deploy_config"]["defaultValue"]["mode"] == "knative"
    assert inputs["rollout_config"]["defaultValue"]["strategy"] == "canary"  # the bundled config's strategy
    release = spec["components"]["comp-condition-6"]["dag"]["tasks"]["release-op"]["inputs"]["parameters"]
    assert release["rollout_config"]["componentInputParameter"] == "pipelinechannel--rollout_config"

    experiment = yaml.safe_load(Path(written["katib-experiment"]).read_text())
    assert experiment["spec"]["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert experiment["spec"]["earlyStopping"]["algorithmName"] == "medianstop"
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["effect"] == "NoSchedule"


def test_local_run_trains_and_registers_through_kfp_local(tmp_path, s3_tls_server, receiver, monkeypatch, capfd):
    """data -> search (Optuna, parallel trial processes) -> train best -> register -> gate -> staging,
    on a small corpus, with manual approval: the run stops at staging awaiting approval, and
    `conveyor approve` releases it through the conveyor-release pipeline (kfp.local).
    The store is the S3 server over TLS with SSE-S3 on every write; the webhook URL carries a token.
    Afterwards no secret (S3 keys, the webhook's token, the server's TLS key) is in any file the run
    wrote, any object in the store, or the run's stdout and stderr."""
    from pipelines.local_run import run_local
    from tests.support.training_data import corpus, small_config

    for key, value in s3_tls_server.env().items():
        monkeypatch.setenv(key, value)
    _server, hook_url, posted = receiver
    webhook_token = "LEAKCHECK-webhook-" + "7f3a9c" * 4
    monkeypatch.setenv("CONVEYOR_NOTIFY_URL", f"{hook_url}/{webhook_token}")

    src = tmp_path / "toy.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in corpus(400)))
    cfg = small_config(epochs=2).model_dump(mode="json", exclude_none=True)
    cfg["data"] = {"dataset": "toy", "reference": [str(src)]}
    cfg["model_name"] = "toy-model"
    cfg["best_trial"] = "keep"  # register the best trial's own model (continuous training in `conveyor run` retrains)
    cfg["gate"] = {"min_accuracy": 0.8, "min_macro_f1": 0.8, "max_ece": 0.5}  # a 2-epoch toy is underconfident
    cfg["search"] = {"algorithm": "random", "max_trials": 2, "parallel_trials": 2,
                     "early_stopping": {"algorithm": "none"},
                     "parameters": [{"name": "lr", "type": "double", "min": 0.01, "max": 0.1, "log": True},
                                    {"name": "embed_dim", "type": "discrete", "values": [16, 24]}]}
    cfg["environments"] = [{"name": "staging"}, {"name": "production", "approval": "manual"}]
    config_path = tmp_path / "toy.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    summary = run_local(config_path=str(config_path), store="s3://conveyor/train-test",
                        workdir=str(tmp_path / "runs"), progress=lambda _m: None)
    step = summary["steps"][0]
    assert step["search"]["trials"] == 2 and set(step["search"]["best_params"]) == {"lr", "embed_dim"}
    # KFP passed the search spec as a protobuf Struct (all numbers doubles): the int stays an int
    # in what the run prints, records and registers
    assert type(step["search"]["best_params"]["embed_dim"]) is int
    from components.common.storage import open_store
    from components.stages.registry.store import load_card

    card = load_card(open_store("s3://conveyor/train-test"), "toy-model", "candidate")
    assert type(card["params"]["train"]["embed_dim"]) is int
    assert step["train"]["run_id"].endswith(("-t000", "-t001"))  # kept, not retrained
    assert step["train"]["test"]["accuracy"] > 0.8
    assert step["model"]["uri"].startswith("s3://conveyor/train-test/models/toy-model/")
    assert Path(step["train"]["curve"]).read_text().count("<polyline") >= 2
    assert step["gate"]["decision"] == "BLESSED", step["gate"]
    assert step["gate"]["infra_validation"].startswith("v1 and v2 match offline")
    # staging passed (its own checks: no production model yet), then the run stopped for a person
    [staged] = step["staging"]["stages"]
    assert staged["env"] == "staging" and staged["passed"] and staged["stable"] is None, staged
    assert step["staging"]["next"] == "awaiting_approval" and step["canary"] is None
    assert [n["event"] for n in step["notifications"]] == ["awaiting_approval"]
    from components.common import audit
    from components.stages.registry.store import resolve_version
    from pipelines.cli import main as conveyor

    store = open_store("s3://conveyor/train-test")
    version = card["version"]
    assert resolve_version(store, "toy-model", "staging") == version
    with pytest.raises(NotFoundError):
        resolve_version(store, "toy-model", "production")
    assert conveyor(["approve", "toy-model", version, "--env", "production", "--reason", "staging report reviewed",
                     "--store", store.uri, "--config", str(config_path), "--workdir", str(tmp_path / "runs")]) == 0
    first = capfd.readouterr()
    out = first.out
    assert "entry to production granted" in out and f"release of toy-model {version} to production: Promoted" in out
    assert resolve_version(store, "toy-model", "production") == version == resolve_version(store, "toy-model",
                                                                                           "champion")
    # every state change of the run is in the audit log, chained
    assert audit.verify(store) >= 10
    entries = audit.read_entries(store)
    events = [e["event"] for e in audit.select(entries, model="toy-model")]
    for event in ("model_registered", "gate_decision", "staging_result", "approval_requested", "approval_granted",
                  "release_started", "release_finished", "alias_moved"):
        assert event in events, (event, events)
    assert events.index("approval_requested") < events.index("approval_granted") < events.index("release_started")
    assert any(e["event"] == "dataset_version_committed" and e["subject"]["dataset"] == "toy" for e in entries)
    assert any(e["event"] == "training_run_finished" for e in entries)
    # pipeline steps record the KFP run id as their actor; the approval, the person who ran the command
    granted = next(e for e in entries if e["event"] == "approval_granted")
    assert granted["details"]["reason"] == "staging report reviewed"
    staged_entry = next(e for e in entries if e["event"] == "staging_result")
    assert staged_entry["actor"] != granted["actor"]
    production = [e for e in entries if e["event"] == "alias_moved" and e["subject"]["alias"] == "production"]
    assert production and production[-1]["subject"]["version"] == version
    assert posted and posted[0]["path"].endswith(webhook_token)  # the webhook was really called with it
    tls_key = Path(s3_tls_server.data_dir, "tls", "server.key").read_text().splitlines()[1]
    _assert_no_secret_anywhere(tmp_path, store, capfd.readouterr(), first.out + first.err, {
        "S3 secret key": s3_tls_server.secret_key, "S3 access key": s3_tls_server.access_key,
        "webhook token": webhook_token, "TLS private key": tls_key})


def _assert_no_secret_anywhere(folder: Path, store, captured, earlier_out: str, secrets: dict[str, str]) -> None:
    """Every file under `folder`, every object in `store`, and the captured stdout/stderr."""
    places = {"stdout/stderr": (earlier_out + captured.out + captured.err).encode()}
    for path in folder.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes()
    for key in store.list(""):
        places[store.url(key)] = store.read_bytes(key)
    assert len(places) > 20
    leaks = [(what, where) for where, data in places.items() for what, value in secrets.items()
             if value.encode() in data]
    assert leaks == []


@pytest.mark.slow
def test_conveyor_run_on_the_bundled_corpus():
    """The README's main command, the whole closed loop, end to end (about 6 minutes on 2 cores)."""
    import subprocess
    import sys

    from components.common.config import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--json"], capture_output=True,
                            text=True, cwd=PROJECT_ROOT, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    first, traffic, monitoring, retrain = summary["steps"]
    assert first["search"]["trials"] >= 8 and first["train"]["test"]["accuracy"] > 0.95
    assert traffic["replay"]["answered"] == traffic["replay"]["logged"] > 2000
    assert monitoring["verdict"]["signals"]["input_drift"] is True  # the production collection really drifts
    assert monitoring["decision"]["action"] == "retrain"
    assert retrain["name"] == "continuous training" and retrain["report"]["drift"]["dataset_drift"] is True
    assert retrain["canary"]["outcome"] in ("Promoted", "RolledBack") and retrain["canary"]["actions"]


def test_task_outputs_are_read_by_the_names_the_components_declare(tmp_path):
    from components.stages.gate.component import gate_op
    from components.stages.release.component import release_op
    from pipelines.task_outputs import output_json, output_path

    with pytest.raises(KeyError, match=r"gate-op has no output 'decision' \(its outputs: \['Output', 'blessing', "
                                       r"'report'\]\)"):
        output_path(tmp_path, gate_op, "decision")
    assert output_path(tmp_path, release_op, "deployment") is None  # a step behind a false condition
    task = tmp_path / "run-1" / "condition-1" / "release-op"
    task.mkdir(parents=True)
    (task / "deployment").write_text('{"outcome": "Promoted"}')
    assert output_json(tmp_path, release_op, "deployment") == {"outcome": "Promoted"}
