"""The predictor: a KServe model serving one registered version with its training featurizer.

v1 (`POST /v1/models/NAME:predict`, `{"instances": ["text", ...]}`) and the Open Inference
Protocol v2 (`POST /v2/models/NAME/infer`, one BYTES input). Bad input is answered 400 with a
message (KServe maps `InvalidInput` to 400), never 500. Every response names the model version.
`/metrics` gains what KServe lacks: requests by status code, errors, latency and predicted
classes, labelled with model version and role (stable/canary).
"""

from __future__ import annotations

import math
import time
import uuid

import numpy as np
import pyarrow as pa

from components.serve import kserve_sdk

kserve_sdk.load()  # before any `from kserve import`: kserve parses sys.argv on first import
from kserve import InferOutput, InferRequest, InferResponse, Model  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from prometheus_client import Counter, Histogram  # noqa: E402

REQUESTS = Counter("conveyor_requests_total", "Prediction requests by outcome",
                   ["model", "version", "role", "code"])
ERRORS = Counter("conveyor_request_errors_total", "Prediction requests that failed (4xx and 5xx)",
                 ["model", "version", "role", "code"])
LATENCY = Histogram("conveyor_request_latency_seconds", "Predict latency (validation, featurize, forward)",
                    ["model", "version", "role"],
                    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0))
PREDICTIONS = Counter("conveyor_predictions_total", "Predicted classes", ["model", "version", "role", "label"])


class ConveyorModel(Model):
    def __init__(self, name: str, store_uri: str | None, model_name: str, ref: str = "champion",
                 role: str = "stable", max_batch: int = 256, max_chars: int = 100_000,
                 log_sample_rate: float = 0.0, chaos: dict | None = None, model_dir: str | None = None):
        super().__init__(name)
        # Chaos options rehearse a bad rollout (error share, added delay, wrong labels); off by default.
        self.chaos = {"error_rate": 0.0, "delay_ms": 0.0, "flip_labels": False, **(chaos or {})}
        # Injected errors are spread evenly, not drawn at random: with error_rate 0.3 every run of
        # 4 consecutive requests holds at least one 500, so a rehearsal cannot pass by luck.
        self._chaos_seen = 0
        self.store_uri, self.model_name, self.ref, self.role = store_uri, model_name, ref, role
        self.max_batch, self.max_chars, self.log_sample_rate = max_batch, max_chars, log_sample_rate
        self.version = "unloaded"
        self.model_dir = model_dir
        self.loaded = None
        self.logger = None

    def load(self) -> bool:
        import torch

        from components.common.storage import open_store
        from components.registry.core import load

        torch.set_num_threads(1)
        if self.model_dir:  # KServe's storage initializer copied the version folder here
            from components.registry.core import load_dir

            self.loaded = load_dir(self.model_dir)  # verifies sha256 of every file
            self.model_name = self.loaded.card["name"]
            store = open_store(self.store_uri) if (self.store_uri or self.log_sample_rate > 0) else None
        else:
            store = open_store(self.store_uri)
            self.loaded = load(store, self.model_name, self.ref)  # verifies sha256 of every file
        self.version = self.loaded.card["version"]
        if self.log_sample_rate > 0:
            from components.serve.logging_sink import InferenceLogger

            self.logger = InferenceLogger(store, self.model_name, self.version, self.role, self.log_sample_rate)
        self.ready = True
        return self.ready

    # -- input ---------------------------------------------------------------------------------
    def _texts(self, payload: dict | InferRequest) -> tuple[list[str], bool, str]:
        if isinstance(payload, InferRequest):
            if len(payload.inputs) != 1:
                raise InvalidInput(f"expected exactly one input tensor (BYTES text), got {len(payload.inputs)}")
            tensor = payload.inputs[0]
            if tensor.datatype != "BYTES":
                raise InvalidInput(f"input {tensor.name!r}: expected datatype BYTES, got {tensor.datatype}")
            data = tensor.data if tensor.data is not None else []
            texts = [d.decode("utf-8", errors="replace") if isinstance(d, bytes) else d for d in data]
            return texts, True, payload.id or str(uuid.uuid4())
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
        return texts, False, str(uuid.uuid4())

    def _check(self, texts: list[str]) -> None:
        if not texts:
            raise InvalidInput("no instances: send at least one text")
        if len(texts) > self.max_batch:
            raise InvalidInput(f"batch of {len(texts)} texts exceeds the limit of {self.max_batch}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"instance {i}: expected a string, got {type(t).__name__}")
            if len(t) > self.max_chars:
                raise InvalidInput(f"instance {i}: {len(t)} characters exceeds the limit of {self.max_chars}")

    # -- prediction ----------------------------------------------------------------------------
    def classify(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        probs = self.loaded.predict_proba(pa.array(texts, pa.large_string()))
        labels = [self.loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
        return labels, probs

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        started = time.perf_counter()
        tags = (self.model_name, self.version, self.role)
        try:
            texts, v2, request_id = self._texts(payload)
            self._check(texts)
            if self.chaos["delay_ms"]:
                import asyncio

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
        except InvalidInput:
            REQUESTS.labels(*tags, "400").inc()
            ERRORS.labels(*tags, "400").inc()
            raise
        except Exception:
            REQUESTS.labels(*tags, "500").inc()
            ERRORS.labels(*tags, "500").inc()
            raise
        LATENCY.labels(*tags).observe(time.perf_counter() - started)
        REQUESTS.labels(*tags, "200").inc()
        for label in labels:
            PREDICTIONS.labels(*tags, label).inc()
        if self.logger is not None:
            self.logger.log(request_id, texts, labels, probs.max(axis=1).tolist())
        if v2:
            # The response id must be a string: a request without "id" would otherwise give a 500.
            return InferResponse(response_id=request_id, model_name=self.name, model_version=self.version,
                                 infer_outputs=[
                                     InferOutput(name="label", shape=[len(labels)], datatype="BYTES", data=labels),
                                     InferOutput(name="probabilities", shape=list(probs.shape), datatype="FP32",
                                                 data=probs.astype(np.float32).ravel().tolist())])
        classes = self.loaded.featurizer.labels
        return {"model_version": self.version, "predictions": [
            {"label": label, "probabilities": {c: float(p) for c, p in zip(classes, row, strict=True)}}
            for label, row in zip(labels, probs, strict=True)]}

    def stop(self) -> None:
        if self.logger is not None:
            self.logger.close()
        super().stop()


def serve(store_uri: str | None, model_name: str, ref: str, port: int, role: str = "stable",
          name: str | None = None, log_sample_rate: float = 0.0, max_batch: int = 256,
          max_chars: int = 100_000, chaos: dict | None = None, access_log: bool = False,
          model_dir: str | None = None) -> None:
    """Run a KServe model server for one model version (blocks until stopped): from the registry
    (store, model_name, ref) or from a version folder (model_dir, e.g. KServe's /mnt/models)."""
    from kserve import ModelServer

    model = ConveyorModel(name or model_name, store_uri, model_name, ref, role, max_batch=max_batch,
                          max_chars=max_chars, log_sample_rate=log_sample_rate, chaos=chaos, model_dir=model_dir)
    model.load()
    # Latency logging off: every request's latency is already in the Prometheus histogram.
    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    if not access_log:
        # KServe's timing middleware and uvicorn log three lines per request; at ~1 ms per request
        # formatting and writing them costs ~15% of the throughput, and /metrics has the same facts.
        import logging

        for logger_name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(logger_name).setLevel(logging.WARNING)
    server.start([model])


