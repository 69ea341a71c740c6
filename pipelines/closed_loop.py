"""The parts of `conveyor run`'s closed loop that stand in for production: the champion served
by a real KServe model server with request logging on, the production batch replayed against it
as traffic, and the batch's labels delivered afterwards as delayed ground truth."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.parquet as pq

from components.common.errors import ConveyorError
from components.common.layout import inference_log_prefix
from components.composition.config import ConveyorConfig
from components.stages.ingest.executor import read_clean
from components.stages.monitor.executor import write_feedback
from components.stages.registry.store import resolve_version
from components.stages.serve.infra import KeepAliveClient, ServerProcess

CLIENTS = 4  # concurrent replay clients


def replay_production(store, cfg: ConveyorConfig, sources: list[str], log=print) -> dict[str, Any]:
    started = time.monotonic()
    batch, quarantined = read_clean(sources, cfg.data.settings_for("production"), cfg.cleaning)
    texts, labels = batch.column("text").to_pylist(), batch.column("label").to_pylist()
    ids = [f"prod-{d}" for d in batch.column("doc_id").to_pylist()]
    model = cfg.model_name
    version = resolve_version(store, model, "champion")
    prefix = inference_log_prefix(model, version)
    logged_before = _logged_rows(store, prefix)
    answered, failed, rejected, first_rejection = 0, 0, 0, None
    # The server accepts what cleaning accepts (its own default limit is lower).
    with ServerProcess(f"{model}@champion", store.uri, name=model, role="stable",
                       extra=["--log-sample-rate", "1", "--max-chars", str(cfg.cleaning.max_chars),
                              "--log-text", cfg.monitor.log_text]) as server:
        path = f"/v2/models/{model}/infer"

        def send(lane: int) -> tuple[int, int, int, str | None]:
            """Every CLIENTS-th request from `lane`, one keep-alive connection: production traffic
            comes from several clients at once, and the server's concurrency is part of what runs."""
            client = KeepAliveClient(server.port)
            ok = refused = broken = 0
            first = None
            for request_id, text in zip(ids[lane::CLIENTS], texts[lane::CLIENTS], strict=True):
                code, body = client.post(path, {"id": request_id, "inputs": [
                    {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]})
                ok += code == 200
                if 400 <= code < 500:  # refused with a reason: counted and shown, not a server failure
                    refused += 1
                    first = first or f"{code} {str(body)[:200]}"
                elif code != 200:
                    broken += 1
            return ok, refused, broken, first

        with ThreadPoolExecutor(CLIENTS) as pool:
            for ok, refused, broken, first in pool.map(send, range(CLIENTS)):
                answered, rejected, failed = answered + ok, rejected + refused, failed + broken
                first_rejection = first_rejection or first
        # the logger writes batches off the request path: wait until every answered row is stored
        deadline = time.monotonic() + 30
        while _logged_rows(store, prefix) - logged_before < answered and time.monotonic() < deadline:
            time.sleep(0.5)
    logged = _logged_rows(store, prefix) - logged_before
    if failed:
        raise ConveyorError(f"replay: the champion failed {failed} of {len(texts)} production requests")
    feedback = write_feedback(store, model, ids, labels, f"production-{int(time.time())}")
    return {"rows": len(texts), "quarantined_on_read": quarantined, "answered": answered, "rejected": rejected,
            "first_rejection": first_rejection, "logged": logged,
            "champion": version, "feedback": store.url(feedback), "seconds": round(time.monotonic() - started, 1)}


def _logged_rows(store, prefix: str) -> int:
    return sum(pq.read_metadata(io.BytesIO(store.read_bytes(k))).num_rows for k in store.list(prefix)
               if k.endswith(".parquet"))
