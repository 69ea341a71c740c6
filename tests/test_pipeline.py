"""The data pipeline compiled by the real KFP compiler and run by kfp.local against real S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.common.config import ConveyorConfig, config_from_dict
from pipelines.compile import compile_all


def test_compile_writes_pipeline_yaml_and_k8s_resources(tmp_path):
    from kfp import components as kfp_components

    written = compile_all(str(tmp_path), k8s=True)["compiled"]
    spec = yaml.safe_load(Path(written["conveyor-data"]).read_text())
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


def test_local_run_through_kfp_local_against_s3(tmp_path, s3_env, monkeypatch):
    """kfp.local runs every component as a subprocess; outputs land in the real S3 store."""
    from tests.malformed import write_mail_folder

    write_mail_folder(tmp_path / "mail")
    cfg = config_from_dict({
        "data": {"dataset": "mini", "reference": [str(tmp_path / "mail")]},
        "cleaning": {"min_chars": 5, "max_chars": 20000, "labels": ["ham", "spam"]},
        "split": {"validation": 0.2, "test": 0.2},
    })
    config_path = tmp_path / "mini.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    from pipelines.local_run import run_local

    summary = run_local(config_path=str(config_path), store="s3://conveyor/pipeline-test",
                        workdir=str(tmp_path / "runs"), progress=lambda _m: None)
    step = summary["steps"][0]
    assert step["ingest"]["rows_read"] == 14 and step["ingest"]["rows_accepted"] == 7
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
