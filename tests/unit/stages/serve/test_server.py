"""The predictor as processes: `--workers N` on one port with /metrics covering every worker (and
surviving a worker's death), and the model-repository extension, off unless asked for and then
behind a bearer token."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from components.stages.serve.infra import ServerProcess
from tests.support.paths import ROOT

TOKEN = "a-test-token-of-enough-length"


def _call(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # a new connection each time
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data or b"{}")


def _requests_total(server) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(r'^conveyor_requests_total\{[^}]*code="200"[^}]*\} ([0-9.e+]+)$', text,
                                            re.MULTILINE))


def _workers(parent: int) -> list[int]:
    """The spawned server processes under `parent` (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _predict(server, text="free cash prize"):
    return _call(server, "POST", f"/v1/models/{server.name}:predict", {"instances": [text]})


def test_workers_share_the_port_and_metrics_cover_all_of_them(two_versions):
    store, stable, *_ = two_versions
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy", extra=["--workers", "2"]) as server:
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        for _ in range(30):
            code, answer = _predict(server)
            assert code == 200 and answer["model_version"] == stable, answer
        assert _requests_total(server) == 30  # whichever worker answers /metrics, it counts both

        # A worker that dies is replaced; what it counted stays counted (counters never go back).
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(now := _workers(server.process.pid)) != 2 or workers[0] in now):
            time.sleep(0.2)
        assert len(now) == 2 and workers[0] not in now, now
        server.wait_ready()
        served = 0
        while served < 10 and time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError):  # a connection the killed worker had accepted
                served += _predict(server)[0] == 200
        assert served == 10 and _requests_total(server) >= 40


def test_workers_with_a_model_that_cannot_load_exit_with_its_message(two_versions):
    store, *_ = two_versions
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "toy-model@nosuch", "--store", store.uri,
                          "--workers", "2", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode not in (0, 1, 70), out.stderr[-2000:]
    assert "nosuch" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("argv, env, expected", [
    (["--model-repository"], {}, "at least 16 characters"),
    (["--model-repository"], {"CONVEYOR_MODEL_REPOSITORY_TOKEN": "short"}, "at least 16 characters"),
    (["--model-repository", "--workers", "2"], {"CONVEYOR_MODEL_REPOSITORY_TOKEN": TOKEN}, "one worker only"),
    (["--workers", "0"], {}, "expected 1 or more"),
])
def test_unsafe_server_options_are_refused_at_start(two_versions, argv, env, expected):
    store, stable, *_ = two_versions
    clean = {k: v for k, v in os.environ.items() if k != "CONVEYOR_MODEL_REPOSITORY_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", f"toy-model@{stable}", "--store", store.uri,
                          "--port", "0", *argv], capture_output=True, text=True, timeout=120, env={**clean, **env})
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_the_model_repository_needs_its_token_and_drains_then_reloads(own_two_versions, monkeypatch):
    from components.stages.registry.store import set_alias

    store, stable, candidate, *_ = own_two_versions
    monkeypatch.setenv("CONVEYOR_MODEL_REPOSITORY_TOKEN", TOKEN)
    with ServerProcess("toy-model@champion", store.uri, name="toy", extra=["--model-repository"]) as server:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-enough-length"}, {"Authorization": TOKEN}):
            code, answer = _call(server, "POST", "/v2/repository/models/toy/unload", headers=headers)
            assert code == 401 and "Bearer" in answer["error"], (headers, answer)
        assert _predict(server)[0] == 200  # refused calls changed nothing

        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert _call(server, "POST", "/v2/repository/models/other/unload", headers=auth)[0] == 404
        code, answer = _call(server, "POST", "/v2/repository/models/toy/unload", headers=auth)
        assert code == 200 and answer["unload"] is True, answer
        assert _call(server, "GET", "/v2/health/ready")[0] == 503  # drained: no traffic should come
        assert _call(server, "GET", "/v2/health/live")[0] == 200  # but not restarted, which would undo it
        assert _predict(server)[0] == 503
        code, index = _call(server, "POST", "/v2/repository/index", headers=auth)
        assert code == 200 and index[0]["state"] == "UNAVAILABLE", index

        set_alias(store, "toy-model", "champion", candidate)  # a load resolves the reference again
        code, answer = _call(server, "POST", "/v2/repository/models/toy/load", headers=auth)
        assert code == 200 and answer["version"] == candidate, answer
        assert _call(server, "GET", "/v2/health/ready")[0] == 200
        code, answer = _predict(server)
        assert code == 200 and answer["model_version"] == candidate != stable, answer


def _pool(tmp_path, mode: str) -> subprocess.Popen:
    code = ("import sys; from components.stages.serve.server import run_workers; "
            "from tests.support.worker_targets import worker; "
            f"sys.exit(run_workers(worker, {{'dir': {str(tmp_path)!r}, 'mode': {mode!r}}}, 1, '127.0.0.1', 0))")
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def _starts(tmp_path, at_least: int, pool: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        exited = pool.poll() is not None  # read before the file: a start just before exit still counts
        path = tmp_path / "starts"
        pids = [int(line) for line in path.read_text().split()] if path.exists() else []
        if len(pids) >= at_least:
            return pids
        if exited:
            break
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} worker starts; pool exited with {pool.poll()}")


def test_a_worker_that_errors_before_ready_stops_the_pool_with_its_code(tmp_path):
    pool = _pool(tmp_path, "fail")
    _, err = pool.communicate(timeout=120)
    assert pool.returncode == 3 and "before its model was ready: stopping" in err, err[-2000:]
    assert len(_starts(tmp_path, 1, pool)) == 1  # not retried: it would fail the same way again


def test_a_worker_killed_before_ready_is_replaced_a_bounded_number_of_times(tmp_path):
    from components.stages.serve.server import MAX_KILLED_BEFORE_READY

    pool = _pool(tmp_path, "hang")
    try:
        for n in range(1, MAX_KILLED_BEFORE_READY + 2):
            os.kill(_starts(tmp_path, n, pool)[-1], signal.SIGKILL)  # as the OOM killer would, mid-load
        _, err = pool.communicate(timeout=120)
    finally:
        pool.kill()
    assert len(_starts(tmp_path, 1, pool)) == MAX_KILLED_BEFORE_READY + 1
    assert pool.returncode == 128 + signal.SIGKILL, err[-2000:]
    assert err.count("replacing it") == MAX_KILLED_BEFORE_READY, err[-2000:]
