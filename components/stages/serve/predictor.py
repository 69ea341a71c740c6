"""The predictor: a KServe model serving one registered version with its training featurizer.

v1 (`POST /v1/models/NAME:predict`, `{"instances": ["text", ...]}`) and the Open Inference
Protocol v2 (`POST /v2/models/NAME/infer`, one BYTES input named "text"; metadata at
`GET /v2/models/NAME`). Bad input is answered 400 with a message naming the field, never 500
(the HTTP layer, error table and request counting are in components/stages/serve/server.py). Every
response names the model version.
`/metrics` gains what KServe lacks: requests by status code, errors, latency and predicted
classes, labelled with model version and role (stable/canary).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
import uuid
from typing import Any

import numpy as np

from components.cluster import kserve_sdk
from components.common.errors import InputError
from components.common.storage import open_store
from components.stages.evaluate.explain import ExplainLimits, explain_texts
from components.stages.registry.store import load, load_dir
from components.stages.serve.logging_sink import InferenceLogger
from components.stages.serve.security import ServerSecurity

kserve_sdk.load()  # before any `from kserve import`: kserve parses sys.argv on first import
from kserve import Model  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from prometheus_client import Counter, Histogram  # noqa: E402

from components.stages.serve import oip  # noqa: E402

INPUT_NAME = "text"
OUTPUT_NAMES = ("label", "probabilities")

REQUESTS = Counter("conveyor_requests_total", "Prediction requests by outcome",
                   ["model", "version", "role", "env", "code"])
ERRORS = Counter("conveyor_request_errors_total", "Prediction requests that failed (4xx and 5xx)",
                 ["model", "version", "role", "env", "code"])
LATENCY = Histogram("conveyor_request_latency_seconds", "Predict latency (validation, featurize, forward)",
                    ["model", "version", "role", "env"],
                    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0))
EXPLAIN_LATENCY = Histogram("conveyor_explain_latency_seconds", "Explain latency (occlusion over the request's texts)",
                            ["model", "version", "role", "env"],
                            buckets=(0.001, 0.004, 0.016, 0.064, 0.256, 1.0, 4.0, 16.0))
PREDICTIONS = Counter("conveyor_predictions_total", "Predicted classes", ["model", "version", "role", "env", "label"])


class ConveyorModel(Model):
    def __init__(self, name: str, store_uri: str | None, model_name: str, ref: str = "champion",
                 role: str = "stable", max_batch: int = 256, max_chars: int = 100_000, env: str = "production",
                 log_sample_rate: float = 0.0, chaos: dict | None = None, model_dir: str | None = None,
                 max_explain_batch: int = 16, max_explain_tokens: int = 64, log_text: str = "redacted"):
        super().__init__(name)
        self.log_text = log_text  # how logged requests keep their text (monitor.log_text)
        # Chaos options rehearse a bad rollout (error share, added delay, wrong labels); off by default.
        self.chaos = {"error_rate": 0.0, "delay_ms": 0.0, "flip_labels": False, **(chaos or {})}
        # Injected errors are spread evenly, not drawn at random: with error_rate 0.3 every run of
        # 4 consecutive requests holds at least one 500, so a rehearsal cannot pass by luck.
        self._chaos_seen = 0
        self.store_uri, self.model_name, self.ref, self.role = store_uri, model_name, ref, role
        self.env = env  # the environment it serves in (staging, production): a label on every metric
        self.max_batch, self.max_chars, self.log_sample_rate = max_batch, max_chars, log_sample_rate
        # An explanation costs up to max_explain_tokens + 1 forward rows per text: both bounds hold it.
        self.max_explain_batch = max_explain_batch
        self.explain_limits = ExplainLimits(max_tokens=max_explain_tokens)
        self.version = "unloaded"
        self.model_dir = model_dir
        self.loaded = None
        self.logger = None
        self.unloaded_on_request = False  # drained through the model repository: live, not ready
        # Each metric's labelled series, looked up once: prometheus_client's labels() validates and
        # locks on every call, a few percent of a request at a thousand requests a second.
        self._series: dict[tuple, Any] = {}

    def load(self) -> bool:
        if self.model_dir:  # KServe's storage initializer copied the version folder here
            self.loaded = load_dir(self.model_dir)  # verifies sha256 of every file
            self.model_name = self.loaded.card["name"]
            store = open_store(self.store_uri) if (self.store_uri or self.log_sample_rate > 0) else None
        else:
            store = open_store(self.store_uri)
            self.loaded = load(store, self.model_name, self.ref)  # verifies sha256 of every file
        self.version = self.loaded.card["version"]
        torch = sys.modules.get("torch")  # imported where the model's form needs it (not embedding_bag's)
        if torch is not None:
            torch.set_num_threads(1)  # one worker, one core: the server scales by workers
        if self.log_sample_rate > 0:
            self.logger = InferenceLogger(store, self.model_name, self.version, self.role, self.log_sample_rate,
                                          text_mode=self.log_text)
        self.ready, self.unloaded_on_request = True, False
        return self.ready

    def release(self) -> None:
        """Unload on request (the model repository's unload): not ready, nothing held, still live."""
        self.ready, self.unloaded_on_request = False, True
        self.loaded = None
        if self.logger is not None:
            self.logger.close()
            self.logger = None

    # -- accounting (called by components.stages.serve.server for every predict/infer answer) ----------
    def count(self, code: int) -> None:
        tags = (self.model_name, self.version, self.role, self.env, str(code))
        self.series(REQUESTS, tags).inc()
        if code >= 400:
            self.series(ERRORS, tags).inc()

    def series(self, metric, tags: tuple[str, ...]):
        """metric.labels(*tags), kept (the version is in the tags, so a reload gets new series)."""
        key = (metric, tags)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*tags)
        return found

    # -- input ---------------------------------------------------------------------------------
    @staticmethod
    def _v1_texts(payload) -> list[str]:
        if isinstance(payload, bytes):
            # KServe hands over the raw body when the Content-Type is not JSON, as with a plain
            # `curl -d '{...}'` (form-urlencoded): a JSON body is still read as one
            try:
                payload = json.loads(payload)
            except ValueError:
                raise InvalidInput('the body is not JSON: send {"instances": ["text", ...]} with '
                                   "Content-Type: application/json") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput('expected a JSON object {"instances": ["text", ...]}')
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(f'"instances" must be a list, got {type(instances).__name__}')
        texts = []
        for i, item in enumerate(instances):
            if isinstance(item, dict):
                item = item.get("text")
            if not isinstance(item, str):
                raise InvalidInput(f"instances[{i}]: expected a string (or {{\"text\": string}}), "
                                   f"got {type(item).__name__}")
            texts.append(item)
        return texts

    def _v2_texts(self, request: oip.Request) -> list[str]:
        if len(request.inputs) != 1:
            raise InvalidInput(f"expected exactly one input tensor ({INPUT_NAME!r}, BYTES), "
                               f"got {len(request.inputs)}")
        tensor = request.inputs[0]
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"input {tensor.name!r}: expected datatype BYTES, got {tensor.datatype}")
        if tensor.name != INPUT_NAME:
            raise InvalidInput(f"input {tensor.name!r}: unknown input (this model takes {INPUT_NAME!r})")
        if len(tensor.shape) != 1:
            raise InvalidInput(f"input {tensor.name!r}: expected shape [batch], got {tensor.shape}")
        for i, item in enumerate(tensor.data):
            if not isinstance(item, str):
                raise InvalidInput(f"input {tensor.name!r}: element {i}: expected a string, "
                                   f"got {type(item).__name__}")
        for name in request.outputs or []:
            if name not in OUTPUT_NAMES:
                raise InvalidInput(f"outputs: unknown output {name!r} (this model has {', '.join(OUTPUT_NAMES)})")
        return list(tensor.data)

    def _check(self, texts: list[str], max_batch: int | None = None) -> None:
        max_batch = max_batch or self.max_batch
        if not texts:
            raise InvalidInput("no instances: send at least one text")
        if len(texts) > max_batch:
            raise InvalidInput(f"batch of {len(texts)} texts exceeds the limit of {max_batch}")
        for i, t in enumerate(texts):
            if len(t) > self.max_chars:
                raise InvalidInput(f"instance {i}: {len(t)} characters exceeds the limit of {self.max_chars}")
            if not t.strip():
                raise InvalidInput(f"instance {i}: empty text (ingestion quarantines these as empty_text)")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800" from JSON
                raise InvalidInput(f"instance {i}: not valid Unicode text (lone surrogate at character "
                                   f"{exc.start})") from None

    # -- prediction ----------------------------------------------------------------------------
    def classify(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        probs = self.loaded.predict_proba(texts)
        labels = [self.loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
        return labels, probs

    async def _answer(self, texts: list[str], request_id: str | None) -> tuple[list[str], np.ndarray]:
        started = time.perf_counter()
        self._check(texts)
        if self.chaos["delay_ms"]:
            await asyncio.sleep(self.chaos["delay_ms"] / 1000)
        if self.chaos["error_rate"]:
            self._chaos_seen += 1
            # request n fails when floor(n * rate) steps up (rounded: 0.3 * 10 must be 3, not 2.99..)
            rate, n = self.chaos["error_rate"], self._chaos_seen
            if math.floor(round(n * rate, 9)) > math.floor(round((n - 1) * rate, 9)):
                raise RuntimeError("chaos: injected failure")
        labels, probs = self.classify(texts)
        if self.chaos["flip_labels"]:
            probs = probs[:, ::-1].copy()
            labels = [self.loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
        tags = (self.model_name, self.version, self.role, self.env)
        self.series(LATENCY, tags).observe(time.perf_counter() - started)
        for label in labels:
            self.series(PREDICTIONS, (*tags, label)).inc()
        if self.logger is not None:
            # v1 requests carry no id: one is made for the logged row only (uuid4 costs ~2% of a request)
            self.logger.log(request_id or str(uuid.uuid4()), texts, labels, probs.max(axis=1).tolist())
        return labels, probs

    async def predict(self, payload: dict, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict:
        """v1 (KServe's route calls this)."""
        labels, probs = await self._answer(self._v1_texts(payload), None)
        classes = self.loaded.featurizer.labels
        return {"model_version": self.version, "predictions": [
            {"label": label, "probabilities": {c: float(p) for c, p in zip(classes, row, strict=True)}}
            for label, row in zip(labels, probs, strict=True)]}

    async def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        """v1 `:explain` (KServe's route calls this): per text, the prediction, each token's effect
        on every class by exact occlusion (components.stages.evaluate.explain) and the top tokens per class."""
        texts = self._v1_texts(payload)
        self._check(texts, self.max_explain_batch)
        started = time.perf_counter()
        # off the event loop: health and predict keep answering while a long text is explained
        explanations = await asyncio.to_thread(explain_texts, self.loaded, texts, self.explain_limits)
        self.series(EXPLAIN_LATENCY, (self.model_name, self.version, self.role, self.env)).observe(
            time.perf_counter() - started)
        return {"model_version": self.version, "explanations": explanations}

    async def infer_v2(self, request: oip.Request) -> dict:
        """v2 infer (components.stages.serve.server's route calls this with the parsed request)."""
        request_id = request.id or str(uuid.uuid4())  # the response id must be a string
        labels, probs = await self._answer(self._v2_texts(request), request_id)
        outputs = [{"name": "label", "datatype": "BYTES", "shape": [len(labels)], "data": labels},
                   {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape),
                    "data": probs.astype(np.float32).ravel().tolist()}]
        wanted = request.outputs
        return {"model_name": self.name, "model_version": self.version, "id": request_id,
                "outputs": [o for o in outputs if wanted is None or o["name"] in wanted]}

    def metadata(self) -> dict:
        """OIP model metadata: the input, the outputs with the class order, the served version."""
        classes = list(self.loaded.featurizer.labels)
        return {"name": self.name, "versions": [self.version], "platform": "conveyor_torch",
                "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1],
                             "parameters": {"classes": classes}},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)],
                             "parameters": {"classes": classes}}]}

    def stop(self) -> None:
        if self.logger is not None:
            self.logger.close()
        super().stop()


def serve(store_uri: str | None, model_name: str, ref: str, port: int, role: str = "stable", env: str = "production",
          name: str | None = None, log_sample_rate: float = 0.0, max_batch: int = 256,
          max_chars: int = 100_000, chaos: dict | None = None, access_log: bool = False,
          model_dir: str | None = None, host: str = "127.0.0.1", workers: int = 1,
          repository_token: str | None = None, max_explain_batch: int = 16, max_explain_tokens: int = 64,
          security: ServerSecurity | None = None, log_text: str = "redacted") -> int:
    """Run a KServe model server for one model version (blocks until stopped): from the registry
    (store, model_name, ref) or from a version folder (model_dir, e.g. KServe's /mnt/models), in
    this process or in `workers` processes sharing the port. Returns the exit code."""

    if workers < 1:
        raise InputError(f"--workers {workers}: expected 1 or more")
    if repository_token is not None and workers > 1:
        raise InputError("--model-repository with --workers > 1: a load or unload would reach one worker only")
    options = {"model": {"name": name or model_name, "store_uri": store_uri, "model_name": model_name, "ref": ref,
                         "role": role, "env": env, "max_batch": max_batch, "max_chars": max_chars,
                         "log_sample_rate": log_sample_rate, "chaos": chaos, "model_dir": model_dir,
                         "max_explain_batch": max_explain_batch, "max_explain_tokens": max_explain_tokens,
                         "log_text": log_text},
               "port": port, "host": host, "access_log": access_log, "repository_token": repository_token,
               "security": security or ServerSecurity()}
    configure_server_logging()  # before the first line: the format is checked here, once
    if workers == 1:
        _serve_process(options)
        return 0
    # lazy: imports fastapi, kserve, kubernetes, pandas at load
    from components.stages.serve.server import run_workers

    # Loaded once here first: a model that cannot load fails with its own message (and exit code),
    # not as one traceback per worker. Released again: the workers hold their own.
    probe = _model(options)
    probe.load()
    probe.release()

    return run_workers(_serve_process, options, workers, host, port)


def configure_server_logging() -> None:
    """KServe's, uvicorn's and our own loggers, as text or (CONVEYOR_LOG_FORMAT=json) one JSON
    object per line; configured before ModelServer, which then keeps it."""
    # lazy: kserve loads in seconds; only serving needs it
    from kserve import logging as kserve_logging

    from components.common.logs import server_log_config  # lazy: with kserve's

    kserve_logging.configure_logging(server_log_config(kserve_logging.KSERVE_LOG_CONFIG))


def _model(options: dict) -> ConveyorModel:
    model_options = dict(options["model"])
    return ConveyorModel(model_options.pop("name"), **model_options)


def _serve_process(options: dict, sock=None, ready=None) -> None:
    """One server process: load the model, then answer on `sock` (a worker) or bind the port itself."""
    # lazy: kserve loads in seconds; only serving needs it
    from kserve import ModelServer

    # lazy: imports fastapi, kserve, kubernetes, pandas at load
    from components.stages.serve.server import start

    configure_server_logging()  # a spawned worker starts with Python's defaults
    model = _model(options)
    model.load()
    if ready is not None:
        ready.set()
    # Latency logging off: every request's latency is already in the Prometheus histogram.
    server = ModelServer(http_port=options["port"], enable_grpc=False, workers=1, enable_latency_logging=False)
    if not options["access_log"]:
        # KServe's timing middleware and uvicorn log three lines per request; at ~1 ms per request
        # formatting and writing them costs ~15% of the throughput, and /metrics has the same facts.

        for logger_name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(logger_name).setLevel(logging.WARNING)
    start(server, model, options["host"], sockets=[sock] if sock is not None else None,
          repository_token=options["repository_token"], security=options["security"],
          timing_log=options["access_log"])
