"""Live progress of `conveyor run`: the steps run as kfp.local subprocesses whose output goes to the
task log, so their progress events (components.common.logs: a search's trials, a large ingest's
rows) are appended to a file this follows and shows. On a terminal: a live bar per running search
or ingest (rich) with each event's line above it; anywhere else (CI, a pod, a pipe): one plain
line per event."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from components.common.logs import PROGRESS_FILE_ENV


class ProgressDisplay:
    def __init__(self, path: Path, stream: TextIO | None = None, live: bool | None = None):
        self.path = Path(path)
        # A stream of our own on the terminal: while a step runs, the task log takes fds 1 and 2.
        self.stream = stream or os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8",
                                          errors="replace")
        self.live = self.stream.isatty() if live is None else live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._previous_env: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> ProgressDisplay:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._previous_env = os.environ.get(PROGRESS_FILE_ENV)
        os.environ[PROGRESS_FILE_ENV] = str(self.path)  # inherited by every kfp.local task
        if self.live:
            # lazy: rich only on a terminal
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, redirect_stdout=False,
                                 redirect_stderr=False, transient=True)
            self._bar.start()
        self._thread = threading.Thread(target=self._follow, name="conveyor-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            # No timeout: once stopped, the follower returns at the file's end, and every event the
            # steps wrote before this point is shown (a bounded join could cut them off on a busy host).
            self._thread.join()
        if self._bar is not None:
            self._bar.stop()
        if self._previous_env is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = self._previous_env
        self.stream.flush()

    def clear(self) -> None:
        """A step ended: its bars go (what was left of them is in its lines and the task log)."""
        with self._lock:
            for task in self._tasks.values():
                self._bar.remove_task(task)
            self._tasks.clear()

    def say(self, message: str) -> None:
        """A line of the run's own (`[1] training pipeline ...`), above any live bar."""
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(message, markup=False, highlight=False)
            else:
                self.stream.write(message + "\n")
                self.stream.flush()

    # -- following the file ---------------------------------------------------------------------
    def _follow(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            pending = ""
            while True:
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith("\n"):
                        self._show(pending)
                        pending = ""
                    continue
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def _show(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return  # a torn line from a step killed mid-write: the task log has the whole story
        fields = record.get("fields") or {}
        event = fields.get("event")
        if self._bar is None:
            self.say(f"    {record.get('message', '')}")
            return
        with self._lock:
            self._update_bar(event, fields, record.get("message", ""))

    def _update_bar(self, event: str | None, fields: dict[str, Any], message: str) -> None:
        bar = self._bar
        if event == "search_started":
            self._tasks["search"] = bar.add_task("search", total=fields.get("total"))
        elif event in ("trial_started", "trial_finished", "trial_counts") and "search" in self._tasks:
            best = fields.get("best_value")
            eta = fields.get("eta_s")
            description = ("search: " + (f"best {best:.4g}" if isinstance(best, int | float) else "no best yet")
                           + (f", ETA {eta:.0f} s" if isinstance(eta, int | float) else ""))
            bar.update(self._tasks["search"], completed=fields.get("done", 0), description=description)
        elif event == "search_finished" and "search" in self._tasks:
            bar.remove_task(self._tasks.pop("search"))
        elif event == "ingest_progress":
            total = fields.get("bytes_total")
            if "ingest" not in self._tasks:
                self._tasks["ingest"] = bar.add_task("ingest", total=total)
            bar.update(self._tasks["ingest"], completed=fields.get("bytes_read", 0),
                       description=f"ingest: {fields.get('rows', 0):,} rows, {fields.get('rows_per_s', 0):,.0f} rows/s")
            return  # the bar says it; no line per update
        if event != "trial_started":
            bar.console.print(f"    {message}", markup=False, highlight=False)
