"""How steps, the CLI's long work and the model server write their log lines.

`CONVEYOR_LOG_FORMAT=json` makes every line one JSON object (time, level, step, run_id, message,
fields): what a cluster's log stack (Loki, Elasticsearch, Cloud Logging) parses. The default,
`text`, is the message alone, for people. Progress events (a search's trials, an ingest's rows)
also go, as JSON lines, to the file named by CONVEYOR_PROGRESS_FILE when it is set: `conveyor
run` follows that file to show live progress while the steps' own output goes to its task log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from components.common.errors import ConfigError

LOG_FORMAT_ENV = "CONVEYOR_LOG_FORMAT"
PROGRESS_FILE_ENV = "CONVEYOR_PROGRESS_FILE"
FORMATS = ("text", "json")
_write_lock = threading.Lock()  # one line at a time from a step's threads (a search runs trials in threads)


def log_format() -> str:
    value = (os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if value not in FORMATS:
        raise ConfigError(f"${LOG_FORMAT_ENV}={value!r}: expected one of {', '.join(FORMATS)}")
    return value


def json_record(level: str, step: str, message: str, run_id: str = "", **fields: Any) -> dict[str, Any]:
    record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "level": level, "step": step, "run_id": run_id, "message": message}
    if fields:
        record["fields"] = fields
    return record


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))


class StepLog:
    """The log of one step: `log("message", field=value)`; `event=` marks a progress event.

    A plain callable taking one string (print, list.append) is what stage code accepts as `log`;
    a StepLog is one, and `emit` passes fields only to a StepLog."""

    def __init__(self, step: str, run_id: str = "", stream: TextIO | None = None, fmt: str | None = None):
        self.step, self.run_id = step, run_id
        self.stream = stream
        self.format = fmt or log_format()
        self.progress_file = os.environ.get(PROGRESS_FILE_ENV) or None

    def __call__(self, message: str, level: str = "info", event: str | None = None, **fields: Any) -> None:
        if event is not None:
            fields = {"event": event, **fields}
        record = json_record(level, self.step, message, self.run_id, **fields)
        text = _line(record) if self.format == "json" else message
        stream = self.stream or sys.stdout
        with _write_lock:
            stream.write(text + "\n")
            stream.flush()
            if event is not None and self.progress_file:
                with open(self.progress_file, "a", encoding="utf-8") as handle:
                    handle.write(_line(record) + "\n")


def emit(log: Callable[..., Any], message: str, event: str | None = None, **fields: Any) -> None:
    """Log through `log` whatever it is: a StepLog gets the event and fields, anything else the text."""
    if isinstance(log, StepLog):
        log(message, event=event, **fields)
    else:
        log(message)


class JsonFormatter(logging.Formatter):
    """Python logging records (the model server: KServe, uvicorn, conveyor.serve) as JSON lines."""

    def __init__(self, step: str = "serve", *args, **kwargs):
        super().__init__()
        self.step = step

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        out = json_record(record.levelname.lower(), self.step, record.getMessage(), "", **fields)
        out["time"] = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        return _line(out)


def server_log_config(base: dict[str, Any], fmt: str | None = None) -> dict[str, Any]:
    """KServe's logging dictConfig (`base`) with conveyor's own logger added, and in json format
    every formatter replaced by JsonFormatter: one JSON object per line from every logger."""
    config = json.loads(json.dumps(base))
    config["loggers"]["conveyor"] = {"handlers": ["kserve"], "level": "INFO", "propagate": False}
    # Everything else (a library's logger, Python warnings once captured) through the same handler.
    config["root"] = {"handlers": ["kserve"], "level": "WARNING"}
    if (fmt or log_format()) == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter", "step": "serve"}
        logging.captureWarnings(True)  # a DeprecationWarning is a log line too, not free text on stderr
    return config
