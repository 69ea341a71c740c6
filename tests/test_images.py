"""The Dockerfiles (no Docker engine here to build them): multi-stage with nothing installed in the
final stage, a non-root user, OCI labels, pins taken from the project; and every compiled pipeline
names the images from the one setting in components/images.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.images import COMPONENT_IMAGE, DOCKERFILES, PREDICTOR_IMAGE, TRAINING_IMAGE

ROOT = Path(__file__).resolve().parents[1]


def _stages(path: Path) -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by FROM."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:  # global ARGs before the first FROM (BASE_IMAGE) belong to no stage
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("image, dockerfile", sorted(DOCKERFILES.items()))
def test_dockerfile_rules(image, dockerfile):
    stages = _stages(ROOT / dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    assert all(s[0] == "FROM ${BASE_IMAGE}" or s[0] == "FROM ${BASE_IMAGE} AS build" for s in stages), \
        "every stage from the one BASE_IMAGE argument (default python:3.11-slim)"
    assert "ARG BASE_IMAGE=python:3.11-slim" in (ROOT / dockerfile).read_text()
    final = stages[-1]
    assert not any(re.match(r"RUN .*(pip|uv) install", line) for line in final), "nothing installed in the final stage"
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].isdigit() and int(users[-1]) != 0, "runs as a numeric non-root user"
    labels = " ".join(line for line in final if line.startswith("LABEL "))
    for key in ("title", "version", "source"):
        assert f"org.opencontainers.image.{key}" in labels
    assert image.rsplit("/", 1)[1].split(":")[0] in labels  # the title names the image
    build = " ".join(" ".join(s) for s in stages[:-1])
    assert "torch==2.13.0" in build and "uv==0.13.9" in build  # pins from the project, never floating
    assert "uv pip install --python /opt/conveyor/bin/python -r pyproject.toml" in build  # pinned by pyproject
    assert "uv pip install --python /opt/conveyor/bin/python --no-deps ." in build  # then the code, in its layer
    cpu_index = "download.pytorch.org/whl/cpu" in build
    assert cpu_index == (image != TRAINING_IMAGE), "CPU torch except in the CUDA training image"


def test_compiled_pipelines_name_the_images_from_one_setting(tmp_path):
    from pipelines.compile import compile_all

    written = compile_all(str(tmp_path))["compiled"]
    spec = next(yaml.safe_load_all(Path(written["conveyor-training"]).read_text()))
    images = {name: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"].items()}
    assert images.pop("exec-train-op") == TRAINING_IMAGE
    assert set(images.values()) == {COMPONENT_IMAGE}
    experiment = yaml.safe_load(Path(written["katib-experiment"]).read_text())
    trial = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert trial["image"] == TRAINING_IMAGE  # Katib trials run in the CUDA image
    assert PREDICTOR_IMAGE.endswith("/conveyor-predictor:0.1.0")
