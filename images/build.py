"""Build the three images from the project's own Dockerfiles (`make images`).

    python images/build.py [--only component|training|predictor]

Uses Docker where an engine answers, else podman (no daemon). A machine that reaches a package
index but no container registry (this project's CI) cannot pull python:3.11-slim, so the base is
built here from Debian packages: debootstrap a minimal bookworm with python3.11, import it, add a
venv at /usr/local (images/base.Dockerfile). The Dockerfiles are used as they are, with two build
arguments: BASE_IMAGE and, where a local torch wheel folder is configured for pip, TORCH_INDEX=""
(so torch==2.13.0 comes from that folder: the CPU build, as on the host). Build steps get the
host's CA bundle and index settings through mounted config files, never through the image.

Images are cached by content: each is also tagged localhost/conveyor-NAME:src-<hash of the
Dockerfile, build arguments, base image and build context>, and a build whose hash exists is
skipped, so repeated test runs do not rebuild. A new build drops the image's older src-* tags and
its earlier untagged builds. The three Dockerfiles share their dependency layers (2.4 GB, built once
here); a build that needs it and finds too little free disk stops before it starts, saying how much
it needs. Prints (and writes to .conveyor/images.json) each image with its size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".conveyor" / "containers"
ROOTFS = "localhost/conveyor-rootfs:bookworm"
BASE = "localhost/conveyor-base:bookworm"
CONTEXT = ("pyproject.toml", "README.md", "components", "pipelines", "configs",
           "images/spark-entrypoint.sh")  # what the Dockerfiles COPY
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NAMES = ("component", "training", "predictor")


class BuildError(RuntimeError):
    pass


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**os.environ, **engine_env()}, **kw)


def engine_env() -> dict[str, str]:
    """podman reads this containers.conf: runc (crun fails on hybrid cgroups here) and ulimits the
    sandbox allows (raising rlimits is not permitted). The API service reads it too."""
    if shutil.which("docker") and _docker_answers():
        return {}
    STATE.mkdir(parents=True, exist_ok=True)
    conf = STATE / "containers.conf"
    text = ('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            '[engine]\nruntime = "runc"\n')
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return {"CONTAINERS_CONF": str(conf)}


_DOCKER: bool | None = None


def _docker_answers() -> bool:
    global _DOCKER
    if _DOCKER is None:
        _DOCKER = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    return _DOCKER


def engine() -> str:
    if shutil.which("docker") and _docker_answers():
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise BuildError("no container engine: `docker info` fails and podman is not installed "
                     "(apt-get install podman runc debootstrap)")


def image_exists(ref: str) -> bool:
    return _run([engine(), "image", "inspect", ref], capture_output=True).returncode == 0


def image_id(ref: str) -> str:
    out = _run([engine(), "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    if out.returncode:
        raise BuildError(f"no image {ref}: {out.stderr.strip()}")
    return out.stdout.strip()


def image_size_mb(ref: str) -> float:
    out = _run([engine(), "image", "inspect", "--format", "{{.Size}}", ref], capture_output=True, text=True,
               check=True)
    return round(int(out.stdout.strip()) / 2**20, 1)


def _apt_mirror() -> str:
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def ensure_base(log=print) -> str:
    """The base image: python:3.11-slim where a registry answers (Docker), else built here."""
    if engine() == "docker":
        return "python:3.11-slim"
    if image_exists(BASE):
        return BASE
    if not image_exists(ROOTFS):
        if not shutil.which("debootstrap"):
            raise BuildError("no base image and no debootstrap to make one (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory(prefix="conveyor-rootfs-") as root:
            log(f"debootstrap bookworm (minbase + python3.11) from {_apt_mirror()} ...")
            subprocess.run(["debootstrap", "--variant=minbase",
                            "--include=python3.11,python3-venv,ca-certificates,passwd", "bookworm", root,
                            _apt_mirror()], check=True, stdout=subprocess.DEVNULL)
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            _run([engine(), "import", "-", ROOTFS], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
            if tar.wait():
                raise BuildError("tar of the debootstrap rootfs failed")
    _build(ROOT / "images" / "base.Dockerfile", BASE, {"ROOTFS": ROOTFS}, ROOT / "images", log)
    return BASE


def _find_links() -> list[str]:
    """pip's find-links folders (the CPU torch wheel on this machine), as Makefile's FIND_LINKS."""
    folders = [d for d in os.environ.get("PIP_FIND_LINKS", "").split() if d]
    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True,
                         text=True)
    folders += out.stdout.split() if out.returncode == 0 else []
    return [d for d in dict.fromkeys(folders) if Path(d).is_dir()]


def _build_settings() -> tuple[list[str], dict[str, str]]:
    """Mounts for the build steps (CA bundle, pip and uv config, wheel folders) and build args."""
    links = _find_links()
    settings = STATE / "build"
    settings.mkdir(parents=True, exist_ok=True)
    pip_conf = ["[global]", f"cert = {CA_BUNDLE}"] + ([f"find-links = {' '.join(links)}"] if links else [])
    (settings / "pip.conf").write_text("\n".join(pip_conf) + "\n")
    uv_toml = ["native-tls = true"] + ([f"find-links = {json.dumps(links)}"] if links else [])
    (settings / "uv.toml").write_text("\n".join(uv_toml) + "\n")
    mounts = [f"{settings / 'pip.conf'}:/etc/pip.conf:ro", f"{settings / 'uv.toml'}:/etc/uv/uv.toml:ro"]
    if Path(CA_BUNDLE).exists():
        mounts.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
    mounts += [f"{d}:{d}:ro" for d in links]
    has_torch = any(next(Path(d).glob("torch-2.13.0*.whl"), None) for d in links)
    return mounts, ({"TORCH_INDEX": ""} if has_torch else {})


def _build(dockerfile: Path, tag: str, args: dict[str, str], context: Path, log) -> None:
    cmd = [engine(), "build", "-f", str(dockerfile), "-t", tag]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    if engine() == "podman":
        mounts, _ = _build_settings()
        cmd += ["--network", "host"] + [f"--volume={m}" for m in mounts]
    cmd.append(str(context))
    log(" ".join(cmd))
    started = time.monotonic()
    out = _run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise BuildError(f"building {tag} failed ({out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}")
    log(f"built {tag} in {time.monotonic() - started:.0f} s")


def context_hash(dockerfile: Path, args: dict[str, str], base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(dockerfile.read_bytes())
    digest.update(json.dumps(args, sort_keys=True).encode())
    digest.update(base_id.encode())
    for name in CONTEXT:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for f in files:
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _drop_stale(name: str, keep: str) -> None:
    """Every source change builds a new src-<hash> image: the older ones of this image and its
    untagged earlier builds go, or their layers pile up. Layers another image still uses (the shared
    dependency layers) stay, as does an image a container still uses."""
    listed = _run([engine(), "images", "--format", "{{.Repository}}:{{.Tag}}",
                   "--filter", f"reference=localhost/conveyor-{name}"], capture_output=True, text=True)
    stale = [ref for ref in listed.stdout.split() if ref.startswith(f"localhost/conveyor-{name}:src-") and ref != keep]
    if stale:
        _run([engine(), "rmi", *stale], capture_output=True)
    _run([engine(), "image", "prune", "-f", "--filter", f"label=org.opencontainers.image.title=conveyor-{name}"],
         capture_output=True)


# Committing a layer holds it about three times on disk at once (the build container's upper layer,
# the blob podman stages in its temp dir, the stored layer): the dependencies' 1.6 GB layer on top
# of torch's 0.8 GB and the base. Measured: 7.6 GB at the peak of a fresh build here (the old
# two-stage Dockerfiles held three more copies of the dependencies, and filled CI's disk).
FRESH_BUILD_BYTES = 8 * 2**30
CODE_BUILD_BYTES = 1 * 2**30


def _storage_dirs() -> list[Path]:
    if engine() != "podman":
        return []
    out = _run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True, text=True)
    dirs = [Path(out.stdout.strip())] if out.returncode == 0 and out.stdout.strip() else []
    return [*dirs, Path(os.environ.get("TMPDIR", "/var/tmp"))]


def check_disk(needed: int) -> None:
    """Fail before a build that cannot finish: podman's own error comes minutes in, mid-commit."""
    for folder in _storage_dirs():
        probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if probe is None:
            continue
        free = shutil.disk_usage(probe).free
        if free < needed:
            raise BuildError(f"not enough disk to build the images: {free / 2**30:.1f} GiB free on the filesystem of "
                             f"{folder}, about {needed / 2**30:.0f} GiB needed (each dependency layer is "
                             f"written about three times while it is committed); free space there, e.g. "
                             f"`podman image prune -a` or an emptier TMPDIR")


SHARED_START, SHARED_END = "# ---- shared with the other two Dockerfiles", "# ---- end of the shared part"


def shared_part(dockerfile: Path) -> str:
    """The instructions every Dockerfile here starts with, up to the dependency layers."""
    text = dockerfile.read_text()
    start, end = text.find(SHARED_START), text.find(SHARED_END)
    if start < 0 or end < start:
        raise BuildError(f"{dockerfile}: no shared part between {SHARED_START!r} and {SHARED_END!r}")
    return text[text.rfind("\n", 0, start) + 1:end]


def deps_hash(args: dict[str, str], base_id: str) -> str:
    """What the shared dependency layers are built from (the layer cache's key, roughly)."""
    from components.cluster.images import DOCKERFILES

    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(shared_part(ROOT / DOCKERFILES[next(iter(DOCKERFILES))]).encode())
    digest.update(json.dumps(args, sort_keys=True).encode() + base_id.encode())
    return digest.hexdigest()[:12]


def _built_deps() -> set[str]:
    try:
        return {r.get("deps") for r in json.loads((STATE / "images.json").read_text()).values()}
    except (OSError, ValueError, AttributeError):
        return set()


def build_all(only: list[str] | None = None, log=print) -> dict[str, dict]:
    sys.path.insert(0, str(ROOT))
    from components.cluster.images import COMPONENT_IMAGE, DOCKERFILES, PREDICTOR_IMAGE, TRAINING_IMAGE

    refs = {"component": COMPONENT_IMAGE, "training": TRAINING_IMAGE, "predictor": PREDICTOR_IMAGE}
    base = ensure_base(log)
    args = {"BASE_IMAGE": base}
    if engine() == "podman":
        args.update(_build_settings()[1])
    results = {}
    names = only or NAMES
    base_id = image_id(base)
    tags = {n: f"localhost/conveyor-{n}:src-{context_hash(ROOT / DOCKERFILES[refs[n]], args, base_id)}"
            for n in names}
    missing = {n for n, tag in tags.items() if not image_exists(tag)}
    deps = deps_hash(args, base_id)
    if missing:
        check_disk(CODE_BUILD_BYTES if deps in _built_deps() else FRESH_BUILD_BYTES)
    for name in names:
        ref, cached = refs[name], tags[name]
        dockerfile = ROOT / DOCKERFILES[ref]
        started = time.monotonic()
        built = name in missing
        if built:
            _build(dockerfile, cached, args, ROOT, log)
        _run([engine(), "tag", cached, ref], check=True)
        if built:  # after the tag moved: the previous image is then dangling too
            _drop_stale(name, cached)
        results[name] = {"image": ref, "cached_as": cached, "built": built, "size_mb": image_size_mb(ref),
                         "seconds": round(time.monotonic() - started, 1), "base": base, "deps": deps}
        log(f"{ref}: {'built' if built else 'up to date'} ({cached}), {results[name]['size_mb']} MiB")
    STATE.mkdir(parents=True, exist_ok=True)
    try:
        earlier = json.loads((STATE / "images.json").read_text())
    except (OSError, ValueError):
        earlier = {}
    (STATE / "images.json").write_text(json.dumps({**earlier, **results}, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=NAMES)
    args = parser.parse_args(argv)
    try:
        build_all(args.only)
    except (BuildError, subprocess.CalledProcessError) as exc:
        sys.stderr.write(f"images: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
