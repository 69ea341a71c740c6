"""Run a container the way the kubelet would run it from a manifest, in the image that manifest names,
with podman (or Docker): the container's `command`/`args` (k8s semantics: command replaces the
image's ENTRYPOINT, args its CMD), `env` and `envFrom` from the Secrets/ConfigMaps given, the pod's
and container's securityContext (runAsUser/runAsGroup, readOnlyRootFilesystem), and volumeMounts
(emptyDir -> tmpfs, configMap/secret -> their keys as read-only files, hostPath-like mounts given
as `extra_mounts`, e.g. the model folder KServe's storage initializer fills at /mnt/models).

What cannot be had without a cluster is replaced by the nearest real thing and said so: cluster
DNS names are mapped to 127.0.0.1 (`hosts`), and the container shares the host's loopback network
so that it reaches the test's S3 server and model servers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import ROOT


def _build_module():
    spec = importlib.util.spec_from_file_location("conveyor_images_build", ROOT / "images" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()


@dataclass
class PodEnv:
    """What the API server would hand the kubelet besides the pod spec itself."""

    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # cluster DNS name -> address


def container_env(container: dict[str, Any], pod_env: PodEnv, pod: dict[str, Any] | None = None) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, values, Secret and ConfigMap
    keys, and the downward API's spec.serviceAccountName from the pod spec)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            env.update(pod_env.secrets[source["secretRef"]["name"]])
        if "configMapRef" in source:
            env.update(pod_env.config_maps[source["configMapRef"]["name"]])
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in (var.get("valueFrom") or {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = pod_env.secrets[ref["name"]][ref["key"]]
        elif "configMapKeyRef" in (var.get("valueFrom") or {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = pod_env.config_maps[ref["name"]][ref["key"]]
        elif "fieldRef" in (var.get("valueFrom") or {}):
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            if path != "spec.serviceAccountName":
                raise NotImplementedError(f"downward API field {path}: not supported by this runner")
            env[var["name"]] = (pod or {}).get("serviceAccountName", "default")
    return env


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of `$(VAR)` in command and args (a port of Kubernetes'
    third_party/forked/golang/expansion/expand.go, `Expand` with `MappingFuncFor`): a defined
    variable is replaced, an undefined reference stays as written, and `$$` becomes `$`."""
    out, checkpoint, cursor = [], 0, 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1:]
            if rest[0] == "$":  # escaped operator
                read, advance = "$", 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:  # incomplete reference: the opener stays literal
                    read, advance = "$(", 1
                else:
                    name = rest[1:close]
                    read, advance = env.get(name, f"$({name})"), close + 1
            else:
                read, advance = "$" + rest[0], 1
            out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def podman_args(pod: dict[str, Any], container: dict[str, Any], pod_env: PodEnv, workdir: Path,
                extra_mounts: list[str] = (), ports: dict[int, int] | None = None,
                empty_dirs: dict[str, Path] | None = None) -> list[str]:
    """The `run` arguments (after `podman run`) that reproduce the container's spec. `empty_dirs`
    backs the named emptyDir volumes with host folders (the kubelet keeps an emptyDir on the node's
    disk), so a test can read what the container left there."""
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    args = ["--rm"]
    if ports:
        args += [f"--publish=127.0.0.1:{host}:{inner}" for inner, host in ports.items()]
    else:
        args += ["--network=host"]
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if user is not None:
        args.append(f"--user={user}" + (f":{group}" if group is not None else ""))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and user in (None, 0):
        raise AssertionError(f"container {container['name']}: runAsNonRoot without a non-root runAsUser")
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # podman would add a writable /tmp; Kubernetes does not
    if sc.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    for cap in (sc.get("capabilities") or {}).get("drop") or []:
        args.append(f"--cap-drop={cap}")
    cpu = ((container.get("resources") or {}).get("limits") or {}).get("cpu")
    if cpu is not None:  # the kubelet turns limits.cpu into the cgroup's CFS quota, as --cpus does
        cpu = str(cpu)
        args.append(f"--cpus={int(cpu[:-1]) / 1000 if cpu.endswith('m') else float(cpu)}")
    for name, address in pod_env.hosts.items():
        args.append(f"--add-host={name}:{address}")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume and mount["name"] in (empty_dirs or {}):
            folder = Path(empty_dirs[mount["name"]])
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)
            args.append(f"--volume={folder}:{mount['mountPath']}:rw")
            continue
        if "emptyDir" in volume:
            args.append(f"--tmpfs={mount['mountPath']}:rw,mode=1777")
            continue
        if "configMap" in volume:
            data = pod_env.config_maps[volume["configMap"]["name"]]
        elif "secret" in volume:
            data = pod_env.secrets[volume["secret"]["secretName"]]
        else:
            raise AssertionError(f"volume {mount['name']}: only emptyDir, configMap and secret are reproduced")
        folder = workdir / f"volume-{mount['name']}"
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in data.items():
            (folder / key).write_text(value)
        folder.chmod(0o755)
        args.append(f"--volume={folder}:{mount['mountPath']}:ro")
    args += [f"--volume={m}" for m in extra_mounts]
    env = container_env(container, pod_env, pod)
    for key, value in env.items():
        args.append(f"--env={key}={value}")
    if container.get("command"):
        args.append(f"--entrypoint={json.dumps([kubelet_expand(c, env) for c in container['command']])}")
    args.append(container["image"])
    args += [kubelet_expand(a, env) for a in container.get("args") or []]
    return args


def run_pod_container(pod: dict[str, Any], container: dict[str, Any], pod_env: PodEnv | None = None,
                      extra_mounts: list[str] = (), timeout: float = 600,
                      empty_dirs: dict[str, Path] | None = None) -> subprocess.CompletedProcess:
    """Run to completion (a Job's or a test hook's container); stdout and stderr captured."""
    with tempfile.TemporaryDirectory(prefix="conveyor-pod-") as tmp:
        args = podman_args(pod, container, pod_env or PodEnv(), Path(tmp), extra_mounts, empty_dirs=empty_dirs)
        return subprocess.run([build.engine(), "run", *args], capture_output=True, text=True, timeout=timeout,
                              env={**__import__("os").environ, **build.engine_env()})


def start_pod_container(pod: dict[str, Any], container: dict[str, Any], pod_env: PodEnv | None = None,
                        extra_mounts: list[str] = (), ports: dict[int, int] | None = None,
                        name: str = "conveyor-test") -> tuple[subprocess.Popen, str]:
    """Start a long-running container (a predictor); returns the process and the container name."""
    import os

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-pod-"))
    args = podman_args(pod, container, pod_env or PodEnv(), workdir, extra_mounts, ports)
    proc = subprocess.Popen([build.engine(), "run", f"--name={name}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **build.engine_env()})
    return proc, name


def stop_container(name: str) -> None:
    import os

    subprocess.run([build.engine(), "rm", "-f", "-t", "5", name], capture_output=True,
                   env={**os.environ, **build.engine_env()})
