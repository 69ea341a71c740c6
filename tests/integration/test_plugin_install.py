"""`kubectl conveyor` as a user gets it: the package installed as a uv tool of its own (`make plugin`),
found by kubectl's own plugin discovery on a PATH without the project's venv; and the krew shim."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.common.config import PROJECT_ROOT

ROOT = Path(PROJECT_ROOT)
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def _user_env(tmp_path: Path, *first: Path) -> dict[str, str]:
    """This environment (the user's CA bundle, proxies, index settings) with a PATH that has no
    virtual environment on it, and no venv activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "CONVEYOR_STORE")}
    return {**env, "PATH": _system_path(*first), "KUBECONFIG": str(tmp_path / "kubeconfig")}


def _system_path(*first: Path) -> str:
    """A PATH with no virtual environment on it: the system's directories only (kubectl's among them)."""
    kubectl = Path(shutil.which("kubectl")).parent
    return os.pathsep.join([*(str(p) for p in first), str(kubectl), "/usr/bin", "/bin"])


@pytest.fixture(scope="module")
def tool_bin(tmp_path_factory):
    """`make plugin` into a private uv tool folder."""
    tmp = tmp_path_factory.mktemp("uv-tool")
    env = {**os.environ, "UV_TOOL_DIR": str(tmp / "tools"), "UV_TOOL_BIN_DIR": str(tmp / "bin")}
    out = subprocess.run(["make", "-C", str(ROOT), "plugin"], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (tmp / "bin" / "kubectl-conveyor").exists() and (tmp / "bin" / "conveyor").exists()
    return tmp / "bin"


@needs_kubectl
def test_kubectl_finds_the_plugin_installed_as_a_uv_tool(tool_bin, tmp_path):
    env = _user_env(tmp_path, tool_bin)
    listed = subprocess.run(["kubectl", "plugin", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert str(tool_bin / "kubectl-conveyor") in listed.stdout
    helped = subprocess.run(["kubectl", "conveyor", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "usage: kubectl conveyor" in helped.stdout, helped.stderr
    # the tool's own interpreter, not this project's venv
    assert ".venv" not in (tool_bin / "kubectl-conveyor").read_text().splitlines()[0]
    missing = subprocess.run(["kubectl", "conveyor", "rollout", "status", "spam", "--kubeconfig",
                              str(tmp_path / "none.yaml")], env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 9 and missing.stdout == ""
    assert missing.stderr.startswith("kubectl conveyor: error: no Kubernetes configuration") and \
        missing.stderr.count("\n") == 1, missing.stderr


def _torch_wheels() -> str | None:
    """The folder pip's find-links names where the CPU torch wheel lies (else uv would fetch the
    multi-GB CUDA build)."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split() or subprocess.run(
        ["python3", "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True).stdout.split()
    return next((f for f in folders if list(Path(f).glob("torch-2.13.0*.whl"))), None)


@needs_kubectl
@pytest.mark.skipif(_torch_wheels() is None, reason="no local CPU torch wheel: uv would download the CUDA build")
def test_the_krew_shim_installs_the_wheel_on_first_use(tool_bin, tmp_path):
    """The archive krew would unpack: the shim, the wheel and the pins, on a PATH with uv on it.
    krew itself (its index, its install) is not reachable here and not tested."""
    unpacked = tmp_path / "krew-archive"
    unpacked.mkdir()
    shutil.copy(ROOT / "krew" / "kubectl-conveyor", unpacked / "kubectl-conveyor")
    for wheel in (ROOT / "dist").glob("conveyor_mlops-*-py3-none-any.whl"):
        shutil.copy(wheel, unpacked / wheel.name)
    for pins in ("overrides.txt", "constraints.txt"):
        shutil.copy(ROOT / "dist" / pins, unpacked / pins)
    uv = ROOT / ".venv" / "bin" / "uv"
    (tmp_path / "uvbin").mkdir()
    (tmp_path / "uvbin" / "uv").symlink_to(uv)
    env = {**_user_env(tmp_path, unpacked, tmp_path / "uvbin"),
           "UV_FIND_LINKS": _torch_wheels()}
    helped = subprocess.run(["kubectl", "conveyor", "rollout", "--help"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert helped.returncode == 0 and "assign" in helped.stdout, helped.stderr[-2000:]
    assert (unpacked / ".uv-tools" / "bin" / "kubectl-conveyor").exists()


def test_the_krew_manifest_template_names_the_shim():
    manifest = yaml.safe_load((ROOT / "krew" / "conveyor.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "conveyor"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["bin"] == "kubectl-conveyor" and os.access(ROOT / "krew" / "kubectl-conveyor", os.X_OK)
