"""The KFP dashboard's run form, read from the compiled pipelines as a user meets it: every input
explained, each setting in one place, numbers keeping their types, and the defaults saying what
to set before a first run on a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from components.common.config import merged_config
from components.common.errors import ConfigError
from components.composition.config import OWN_PARAMETERS, ConveyorConfig, run_config
from tests.support.paths import ROOT

NAMES = ("conveyor-data", "conveyor-training", "conveyor-continuous-training", "conveyor-monitoring",
         "conveyor-release")


def _spec(name: str) -> dict:
    return next(d for d in yaml.safe_load_all((ROOT / "pipelines" / "compiled" / f"{name}.yaml").read_text()) if d)


@pytest.mark.parametrize("name", NAMES)
def test_every_pipeline_and_component_input_and_output_is_described(name):
    spec = _spec(name)
    assert spec["pipelineInfo"].get("description")
    missing = [f"root input {k}" for k, v in spec["root"]["inputDefinitions"]["parameters"].items()
               if not v.get("description")]
    for comp_name, comp in spec["components"].items():
        if "executorLabel" not in comp:
            continue  # a DAG (exit handler, condition): its inputs are the pipeline's own
        for side in ("inputDefinitions", "outputDefinitions"):
            for kind in ("parameters", "artifacts"):
                for key, value in (comp.get(side, {}).get(kind) or {}).items():
                    if key.startswith("pipelinechannel--"):
                        continue
                    if not value.get("description"):
                        missing.append(f"{comp_name} {side}.{kind}.{key}")
    assert missing == []


@pytest.mark.parametrize("name", ("conveyor-training", "conveyor-continuous-training"))
def test_each_setting_has_one_place_on_the_form(name):
    params = _spec(name)["root"]["inputDefinitions"]["parameters"]
    config = params["config"]["defaultValue"]
    repeated = sorted(set(config) & set(OWN_PARAMETERS))
    assert repeated == [], f"config repeats sections that are parameters of their own: {repeated}"
    # what is left is exactly the config's sections without a parameter
    assert set(config) == set(run_config(ConveyorConfig().model_dump(mode="json", exclude_none=True)))
    for own in ("split_config", "features_config", "cluster_config", "gate_config", "canary_config"):
        assert own in params


def test_a_copy_that_disagrees_is_refused_naming_the_field():
    config = {"train": {"epochs": 4}, "split": {"validation": 0.1, "test": 0.2}}
    with pytest.raises(ConfigError) as refused:
        merged_config(config, split={"validation": 0.1, "test": 0.1})
    assert "config.split.test is 0.2 but split_config.test is 0.1" in refused.value.message
    # the same value in both is no conflict, even as KFP's double
    merged = merged_config({"split": {"validation": 0.1, "test": 0.1}, "features": {"num_buckets": 262144.0}},
                           split={"validation": 0.1, "test": 0.1}, features={"num_buckets": 262144})
    assert merged["features"] == {"num_buckets": 262144}


def test_search_values_keep_the_training_configs_types_through_a_protobuf_struct():
    """KFP hands a dict parameter over as a protobuf Struct: every number a double."""
    from google.protobuf import json_format, struct_pb2

    from components.stages.search.spec import parse_spec

    search = ConveyorConfig.model_validate(yaml.safe_load((ROOT / "configs/spamassassin.yaml").read_text())).search
    search = {**search, "parameters": [*search["parameters"],
                                       {"name": "features.word_ngrams", "type": "categorical",
                                        "values": [[1, 2], [1, 1]]}]}
    struct = struct_pb2.Struct()
    struct.update(search)
    as_kfp_gives_it = json_format.MessageToDict(struct)
    assert as_kfp_gives_it["parameters"][1]["values"] == [32.0, 64.0, 128.0]  # the defect, as KFP makes it
    spec = parse_spec(as_kfp_gives_it)
    values = {p.name: p.values for p in spec.parameters}
    assert values["embed_dim"] == [32, 64, 128] and all(type(v) is int for v in values["embed_dim"])
    assert values["features.word_ngrams"] == [[1, 2], [1, 1]]
    assert all(type(v) is int for pair in values["features.word_ngrams"] for v in pair)
    assert spec.max_trials == 8 and type(spec.max_trials) is int


def test_the_form_says_what_to_set_before_a_first_cluster_run():
    params = _spec("conveyor-training")["root"]["inputDefinitions"]["parameters"]
    assert "BEFORE THE FIRST RUN ON A CLUSTER" in params["sources"]["description"]
    assert all(not s.startswith("s3://") for s in params["sources"]["defaultValue"])  # hence the warning
    assert "conveyor-s3" in params["store"]["description"]
    assert "fields: validation, test, salt" in params["split_config"]["description"]


def test_compile_takes_the_image_registry_and_tag(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CONVEYOR_REGISTRY", "CONVEYOR_IMAGE_TAG")}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--out", str(tmp_path),
                          "--image-registry", "registry.example.com/ml", "--image-tag", "1.2.3",
                          "--log-format", "json"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    spec = next(yaml.safe_load_all((tmp_path / "conveyor-training.yaml").read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/ml/conveyor-component:1.2.3",
                      "registry.example.com/ml/conveyor-training:1.2.3"}
    assert json.loads(out.stdout)["compiled"]
    envs = [e["container"].get("env") for e in spec["deploymentSpec"]["executors"].values()]
    assert all({"name": "CONVEYOR_LOG_FORMAT", "value": "json"} in env for env in envs)  # every step
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--out", str(tmp_path),
                          "--image-tag", "a b"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--image-tag 'a b'" in bad.stderr
