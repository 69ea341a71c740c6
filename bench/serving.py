"""Predictor benchmark: v1 single-text latency and throughput at 1/8/32 concurrent clients, next
to the raw model forward time and a bare HTTP echo server, in the same run. Loopback only; every
load loop is bounded in requests and time."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

TEXT = "free cash prize, click here to claim your credit before the offer ends"


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def load(port: int, path: str, clients: int, total: int, max_seconds: float = 60.0) -> dict:
    """`total` requests spread over `clients` threads, each with one keep-alive connection."""
    body = json.dumps({"instances": [TEXT]}).encode()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_client = total // clients
    deadline = time.monotonic() + max_seconds

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        for _ in range(per_client):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - started) * 1000)
            if resp.status != 200:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "rps": round(len(latencies) / wall), **_percentiles(latencies)}


def _wait(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready")


def bench_serving(work: Path, requests_per_level: int = 2000) -> dict:
    from bench.training import _prepare
    from components.registry import core as registry
    from components.serve.infra import ServerProcess, free_port
    from components.train.entrypoint import apply_params, run_training

    store, version, cfg = _prepare(work, 20_000)
    cfg = apply_params(cfg, {"epochs": 2, "embed_dim": 64})
    record = run_training(store, "bench", version, cfg, f"serve-bench-{int(time.time())}", emit=lambda _l: None,
                          progress=False)
    card = registry.register_run(store, "bench-model", record, alias="champion")

    # Raw forward: featurize + model on one text, in process (what the predictor adds HTTP to).
    import pyarrow as pa
    import torch

    torch.set_num_threads(1)
    loaded = registry.load(store, "bench-model", card["version"])
    forward = []
    for _ in range(1000):
        started = time.perf_counter()
        loaded.predict_proba(pa.array([TEXT], pa.large_string()))  # the predictor's own scoring path
        forward.append((time.perf_counter() - started) * 1000)
    raw = _percentiles(forward[100:])

    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(echo_port)])
    try:
        _wait(echo_port, "/ready")
        echo_levels = [load(echo_port, "/v1/models/echo:predict", c, requests_per_level) for c in (1, 8, 32)]
    finally:
        echo.terminate()
        echo.wait()
    with ServerProcess(f"bench-model@{card['version']}", store.uri, name="bench") as server:
        load(server.port, "/v1/models/bench:predict", 1, 200)  # warm-up
        levels = [load(server.port, "/v1/models/bench:predict", c, requests_per_level) for c in (1, 8, 32)]
    one, echo_one = levels[0], echo_levels[0]
    bound = raw["p50_ms"] + echo_one["p50_ms"]
    return {"raw_forward": raw, "echo": echo_levels, "predictor": levels,
            "p50_over_forward_plus_echo": round(one["p50_ms"] / bound, 3),
            "targets": {"p50_over_forward_plus_echo": "<= 1.3", "p99_ms_at_1_client": "<= 3",
                        "rps_at_32_clients": ">= 1500"}}


if __name__ == "__main__":
    print(json.dumps(bench_serving(Path("bench/work")), indent=2))
