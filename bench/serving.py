"""Predictor benchmark: v1 single-text latency and throughput at 1, 8 and 50 concurrent clients,
with 1 and 2 server workers, next to the raw model forward time and a bare FastAPI echo server at
the same worker counts, in the same run. Loopback only; every load level runs for a fixed time."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEXT = "free cash prize, click here to claim your credit before the offer ends"


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


# (clients, seconds): one client for latency, 8 for the p99 target, 50 for the throughput target.
LEVELS = ((1, 10), (8, 30), (50, 30))
WORKERS = (1, 2)


def load(port: int, path: str, clients: int, seconds: float) -> dict:
    """Closed-loop load from bench.loadgen in its own process (keep-alive connections, uvloop)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as body:
        body.write(json.dumps({"instances": [TEXT]}).encode())
        body.flush()
        out = subprocess.run([sys.executable, "-m", "bench.loadgen", str(port), path, str(clients), str(seconds),
                              body.name], capture_output=True, text=True, check=True, timeout=seconds + 60)
    return json.loads(out.stdout)


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


def bench_model(work: Path, run_prefix: str):
    """The model the serving benches serve: 20k synthetic documents, 2 epochs, registered as
    bench-model@champion. Returns (store, model card)."""
    from bench.training import _prepare
    from components.stages.registry import store as registry
    from components.stages.train.config import apply_params
    from components.stages.train.entrypoint import run_training

    store, version, cfg = _prepare(work, 20_000)
    cfg = apply_params(cfg, {"epochs": 2, "embed_dim": 64})
    record = run_training(store, "bench", version, cfg, f"{run_prefix}-{int(time.time())}", emit=lambda _l: None,
                          progress=False)
    return store, registry.register_run(store, "bench-model", record, alias="champion")


def bench_serving(work: Path, requests_per_level: int = 2000) -> dict:
    from components.stages.registry import store as registry
    from components.stages.serve.infra import ServerProcess, free_port

    store, card = bench_model(work, "serve-bench")

    # Raw forward: featurize + model on one text, in process (what the predictor adds HTTP to).
    import torch

    torch.set_num_threads(1)
    loaded = registry.load(store, "bench-model", card["version"])
    forward = []
    for _ in range(1000):
        started = time.perf_counter()
        loaded.predict_proba([TEXT])  # the predictor's own scoring path (ConveyorModel.classify)
        forward.append((time.perf_counter() - started) * 1000)
    raw = _percentiles(forward[100:])

    servers = {}
    for workers in WORKERS:  # the echo and the predictor, each at the same worker count, in turn
        echo_port = free_port()
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(echo_port), str(workers)])
        try:
            _wait(echo_port, "/ready")
            load(echo_port, "/v1/models/echo:predict", 8, 2)  # warm-up
            servers[f"echo_w{workers}"] = [load(echo_port, "/v1/models/echo:predict", c, t) for c, t in LEVELS]
        finally:
            echo.terminate()
            echo.wait()
        with ServerProcess(f"bench-model@{card['version']}", store.uri, name="bench",
                           extra=["--workers", str(workers)]) as server:
            load(server.port, "/v1/models/bench:predict", 8, 2)  # warm-up
            servers[f"predictor_w{workers}"] = [load(server.port, "/v1/models/bench:predict", c, t)
                                                for c, t in LEVELS]
    one, echo_one = servers["predictor_w1"][0], servers["echo_w1"][0]
    bound = raw["p50_ms"] + echo_one["p50_ms"]
    return {"raw_forward": raw, "levels": [list(level) for level in LEVELS], "servers": servers,
            "p50_over_forward_plus_echo": round(one["p50_ms"] / bound, 3),
            "targets": {"p50_over_forward_plus_echo": "<= 1.3", "p99_ms_at_1_client": "<= 3",
                        "rps_at_50_clients": ">= 1500, 0 errors", "p99_ms_at_8_clients": "<= 50"}}


if __name__ == "__main__":
    print(json.dumps(bench_serving(Path("bench/work")), indent=2))
