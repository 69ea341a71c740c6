"""Infra validation: the candidate, served by a real KServe model server process, must answer
v1 and v2 requests exactly as the offline model does on the same rows."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from components.stages.serve.security import ClientAuth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answer(data: bytes) -> dict:
    """A JSON answer; a body that is not JSON (a proxy's or uvicorn's plain-text error) is kept as
    its text under "error" rather than dropped."""
    try:
        return json.loads(data or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"error": data.decode("utf-8", errors="replace")[:2000]}


def http_json(url: str, body: dict | None = None, timeout: float = 10.0,
              headers: dict[str, str] | None = None, auth: ClientAuth | None = None) -> tuple[int, dict]:
    """GET (no body) or POST JSON; `auth` adds the bearer token and the CA for an https URL."""
    data = None if body is None else json.dumps(body).encode()
    auth = auth or ClientAuth()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **auth.headers(),
                                                          **(headers or {})},
                                 method="POST" if body is not None else "GET")
    try:
        # the callers build http(s) URLs of their own servers (bandit B310)
        with urllib.request.urlopen(req, timeout=timeout, context=auth.ssl_context()) as resp:  # nosec B310
            return resp.status, _answer(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _answer(exc.read())


class KeepAliveClient:
    """http_json over one persistent HTTP/1.1 connection to a loopback server, for long replays (a new
    connection per request would triple the cost)."""

    def __init__(self, port: int, timeout: float = 30, auth: ClientAuth | None = None):
        self.auth = auth or ClientAuth()
        context = self.auth.ssl_context()
        self.connection = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
                           if context else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        self.connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                                 **self.auth.headers()})
        response = self.connection.getresponse()
        return response.status, _answer(response.read())


def new_client_auth() -> ClientAuth:
    """A fresh token for the model servers one step starts and the requests it sends them."""
    return ClientAuth(token=secrets.token_urlsafe(24))


class ServerProcess:
    """`conveyor serve` in a subprocess on a free loopback port, stopped on exit. With `auth` carrying
    a token, the server requires it (passed in a private file, never on the command line) and
    `self.auth` is what a client sends; `tls` = (cert, key) serves https (then `auth.ca_file` is the
    CA to trust)."""

    def __init__(self, model: str, store: str | None, name: str = "model", role: str = "stable",
                 extra: list[str] | None = None, startup_timeout: float = 60.0, wait: bool = True,
                 env: str = "production", auth: ClientAuth | None = None, tls: tuple[str, str] | None = None):
        self.port = free_port()
        self.name = name
        self.auth = auth or ClientAuth()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self._secrets = tempfile.TemporaryDirectory(prefix="conveyor-serve-")  # 0700
        cmd = [sys.executable, "-m", "pipelines.cli", "serve", model, "--port", str(self.port), "--name", name,
               "--role", role, "--env", env, *(extra or [])]
        if self.auth.token:
            token_file = os.path.join(self._secrets.name, "token")
            with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(self.auth.token)
            cmd += ["--auth-token-file", token_file]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if store:
            cmd += ["--store", store]
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.startup_timeout = startup_timeout
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the model answers ready (start several servers first, then wait: they load in parallel)."""
        timeout = timeout or self.startup_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited with {self.process.returncode}: {self.output()[-800:]}")
            try:
                code, _ = http_json(f"{self.url}/v2/models/{self.name}/ready", timeout=1, auth=self.auth)
                if code == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"model server not ready within {timeout:.0f}s")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._secrets.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()


def validate_in_server(model_ref: str, store: str | None, texts: list[str], expected_labels: list[str],
                       expected_probs: np.ndarray, version: str) -> dict[str, Any]:
    """Query the served model over v1 and v2; every answer must match offline predictions."""
    detail = []
    matches = 0
    total = 0
    try:
        with ServerProcess(model_ref, store, name="candidate", auth=new_client_auth()) as server:
            started = time.perf_counter()
            code, v1 = http_json(f"{server.url}/v1/models/candidate:predict", {"instances": texts}, auth=server.auth)
            v1_ms = (time.perf_counter() - started) * 1000
            if code != 200:
                detail.append(f"v1 answered {code}: {v1}")
                v1 = {"predictions": []}
            if v1.get("model_version") not in (None, version):
                detail.append(f"v1 names version {v1.get('model_version')}, expected {version}")
            started = time.perf_counter()
            code, v2 = http_json(f"{server.url}/v2/models/candidate/infer", {"inputs": [
                {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}, auth=server.auth)
            v2_ms = (time.perf_counter() - started) * 1000
            if code != 200:
                detail.append(f"v2 answered {code}: {v2}")
                v2 = {"outputs": []}
    except RuntimeError as exc:
        return {"passed": False, "matching_share": 0.0, "detail": str(exc)}
    names = sorted({label for label in expected_labels})
    for i, pred in enumerate(v1.get("predictions", [])):
        total += 1
        probs = [pred["probabilities"].get(n) for n in sorted(pred["probabilities"])]
        ok = pred["label"] == expected_labels[i] and np.allclose(probs, expected_probs[i], atol=1e-5)
        matches += ok
    outputs = {o["name"]: o for o in v2.get("outputs", [])}
    if "label" in outputs:
        got = outputs["label"]["data"]
        tensor = outputs["probabilities"]
        probs = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        for i, label in enumerate(got):
            total += 1
            matches += label == expected_labels[i] and np.allclose(probs[i], expected_probs[i], atol=1e-5)
    expected_total = 2 * len(texts)
    share = matches / expected_total if expected_total else 0.0
    if total != expected_total:
        detail.append(f"{total} answers for {expected_total} expected")
    if matches != expected_total:
        detail.append(f"{expected_total - matches} of {expected_total} answers differ from offline predictions")
    return {"passed": matches == expected_total and not detail, "matching_share": share,
            "detail": "; ".join(detail) or f"v1 and v2 match offline on {len(texts)} rows", "rows": len(texts),
            "v1_ms": round(v1_ms, 2), "v2_ms": round(v2_ms, 2), "labels_seen": names}
