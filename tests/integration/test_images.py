"""The Dockerfiles' rules (make test-cluster builds them): one stage whose dependency layers the three
images share, installed as root and run as a non-root user, OCI labels, pins taken from the
project; and every compiled pipeline names the images from the one setting in components/cluster/images.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from components.cluster.images import COMPONENT_IMAGE, DOCKERFILES, PREDICTOR_IMAGE, TRAINING_IMAGE
from tests.support.paths import ROOT


def _instructions(text: str) -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("image, dockerfile", sorted(DOCKERFILES.items()))
def test_dockerfile_rules(image, dockerfile):
    text = (ROOT / dockerfile).read_text()
    lines = _instructions(text)
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM ${BASE_IMAGE}"], \
        "one stage, from the one BASE_IMAGE argument (a build stage copied over held the venv twice more on disk)"
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].isdigit() and int(users[-1]) != 0, "runs as a numeric non-root user"
    after_user = lines[lines.index(f"USER {users[-1]}"):]
    assert not any(line.startswith(("RUN", "COPY")) for line in after_user), "installed as root, run as the user"
    for run in (line for line in lines if "uv==" in line):
        assert "--target /tmp/uv" in run and run.endswith(("rm -rf /tmp/uv", "/src/*.egg-info")), \
            "uv is there for one step and leaves nothing in the layer"
    labels = " ".join(line for line in lines if line.startswith("LABEL "))
    for key in ("title", "version", "source"):
        assert f"org.opencontainers.image.{key}" in labels
    assert image.rsplit("/", 1)[1].split(":")[0] in labels  # the title names the image
    joined = " ".join(lines)
    assert "torch==2.13.0" in joined and "uv==0.13.9" in joined  # pins from the project, never floating
    assert "uv pip install --python /opt/conveyor/bin/python -r pyproject.toml" in joined  # pinned by pyproject
    deps = next(i for i, line in enumerate(lines) if "-r pyproject.toml" in line)
    code = next(i for i, line in enumerate(lines) if "--no-deps ." in line)
    assert deps < lines.index("COPY components ./components") < code, "the code is a layer above the dependencies"
    cpu_index = "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in lines
    assert cpu_index == (image != TRAINING_IMAGE), "CPU torch except in the CUDA training image"


def test_the_three_images_share_their_dependency_layer():
    """Instruction for instruction, so that with the same build arguments the layer cache builds
    the 2.4 GB of dependency layers once (images/build.py's disk estimate counts on it)."""
    sys.path.insert(0, str(ROOT / "images"))
    from build import shared_part

    parts = {d: _instructions(shared_part(ROOT / d)) for d in DOCKERFILES.values()}
    first = next(iter(parts.values()))
    assert any("-r pyproject.toml" in line for line in first) and "ARG TORCH_INDEX" in first
    assert all(p == first for p in parts.values()), "the shared parts differ"
    for dockerfile in DOCKERFILES.values():
        lines = _instructions((ROOT / dockerfile).read_text())
        assert lines[lines.index("FROM ${BASE_IMAGE}") + 1:][:len(first)] == first, \
            f"{dockerfile}: the shared part must follow FROM directly"


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


def test_a_build_without_the_disk_it_needs_stops_before_it_starts(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "images"))
    import build

    monkeypatch.setattr(build, "_storage_dirs", lambda: [tmp_path / "storage"])
    free = build.shutil.disk_usage(tmp_path).free
    build.check_disk(min(free, build.CODE_BUILD_BYTES))  # enough: nothing raised
    with pytest.raises(build.BuildError, match=r"GiB free on the filesystem of .*storage, about \d+ GiB needed"):
        build.check_disk(free + 2**40)
