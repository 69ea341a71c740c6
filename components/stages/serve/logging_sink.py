"""Sampled request/prediction logging to the store, in batches, off the request path."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import queue
import random
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client import Counter

from components.common.layout import inference_log_key
from components.common.redact import for_log

# Lost log rows are visible on /metrics, never silent: a full queue drops, a store outage fails.
LOG_DROPPED = Counter("conveyor_inference_log_dropped_total", "Logged rows dropped: the log queue was full",
                      ["model", "version"])
LOG_WRITE_ERRORS = Counter("conveyor_inference_log_write_errors_total", "Logged rows lost: the store write failed",
                           ["model", "version"])

LOG_SCHEMA = pa.schema([("ts", pa.string()), ("model", pa.string()), ("version", pa.string()),
                        ("role", pa.string()), ("request_id", pa.string()), ("text", pa.large_string()),
                        ("label", pa.string()), ("confidence", pa.float64()), ("text_mode", pa.string())])


class InferenceLogger:
    """Requests enqueue rows (never block: a full queue drops and counts); a thread writes Parquet
    batches to `inference-logs/<model>/<version>/<date>/<uuid>.parquet`. The text is kept as
    `text_mode` says (monitor.log_text), turned into that form in the writer thread, off the request
    path; the raw text lives only in memory until then."""

    def __init__(self, store, model: str, version: str, role: str, sample_rate: float = 1.0,
                 batch_rows: int = 500, flush_seconds: float = 5.0, max_queue: int = 20_000,
                 text_mode: str = "redacted"):
        for_log("", text_mode)  # an unknown mode fails here, at start, not in the writer thread
        self.text_mode = text_mode
        self.store, self.model, self.version, self.role = store, model, version, role
        self.sample_rate, self.batch_rows, self.flush_seconds = sample_rate, batch_rows, flush_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written = 0
        self.write_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="inference-logger")
        self._thread.start()

    def log(self, request_id: str, texts: list[str], labels: list[str], confidences: list[float]) -> None:
        # sampling, not a secret (bandit B311)
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:  # nosec B311
            return
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        for text, label, conf in zip(texts, labels, confidences, strict=True):
            try:
                self._queue.put_nowait((ts, request_id, text, label, conf))
            except queue.Full:
                self.dropped += 1
                LOG_DROPPED.labels(self.model, self.version).inc()

    def _run(self) -> None:
        rows: list[tuple] = []
        last = time.monotonic()
        while not (self._stop.is_set() and self._queue.empty()):
            with contextlib.suppress(queue.Empty):
                rows.append(self._queue.get(timeout=0.2))
            if rows and (len(rows) >= self.batch_rows or time.monotonic() - last >= self.flush_seconds
                         or self._stop.is_set()):
                self._write(rows)
                rows, last = [], time.monotonic()
        if rows:
            self._write(rows)

    def _write(self, rows: list[tuple]) -> None:
        n = len(rows)
        try:  # one failed batch is counted, never the writer thread's end (later rows would go unlogged)
            self.store.write_bytes(self._key(), self._parquet(rows))
            self.written += n
        except Exception:  # the store down, or a text redaction could not handle: count the rows lost
            self.write_errors += n
            LOG_WRITE_ERRORS.labels(self.model, self.version).inc(n)

    def _parquet(self, rows: list[tuple]) -> bytes:
        ts, request_id, text, label, conf = zip(*rows, strict=True)
        n = len(rows)
        table = pa.table({"ts": list(ts), "model": [self.model] * n, "version": [self.version] * n,
                          "role": [self.role] * n, "request_id": list(request_id),
                          "text": [for_log(t, self.text_mode) for t in text], "label": list(label),
                          "confidence": list(conf), "text_mode": [self.text_mode] * n}, schema=LOG_SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()

    def _key(self) -> str:
        return inference_log_key(self.model, self.version, dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                                 uuid.uuid4().hex)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

