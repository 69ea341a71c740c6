"""Cleaning's per-batch half on every core (`data.workers`).

`clean.prepare` (decode, normalize, validate, SHA-256) depends on one batch alone, so worker
processes run it while the ingest process reads the next batches and admits the prepared ones in
input order (`Cleaner.admit`: dedup, counts, digest), then writes them. Order is what keeps the
result identical to one worker's: the first occurrence of a duplicate is the one admitted, and the
parts are written in the same order with the same row groups.

At most `depth` batches are in flight, so memory stays flat whatever the input size.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle  # nosec B403: only between this process and the workers it started, over their pipes
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.core import PREPARE_READS, Prepared, prepare
from components.stages.ingest.topics import source_selector


def usable_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroup's CPU quota (a pod's
    `resources.limits.cpu`), which affinity does not show."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(Path(cgroup_root))
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def cpu_quota(root: Path) -> float | None:
    """CPUs' worth of the cgroup's CFS quota: cgroup v2 `cpu.max` ("150000 100000"; "max" is none),
    else cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 is none). None: no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in ("cpu", "cpu,cpuacct"):
        try:
            quota = int((root / folder / "cpu.cfs_quota_us").read_text())
            period = int((root / folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def resolve_workers(workers: int | None) -> int:
    """data.workers: None or 0 -> the usable cores; otherwise as given (at least 1)."""
    return usable_cores() if not workers else max(1, int(workers))


def prepared_in_order(batches: Iterable[pa.RecordBatch], cleaning: CleaningConfig, settings: SourceSettings,
                      workers: int, depth: int | None = None) -> Iterator[tuple[pa.RecordBatch, Prepared]]:
    """(raw batch, prepare(raw)) for each batch, in input order, prepared by `workers` processes.

    Batch i goes to worker i mod N and each worker answers in the order it was asked, so reading the
    answers round-robin gives input order with no sequence numbers. A feeder thread sends while
    this thread reads, so a worker blocked on a full pipe never waits on this one. Workers are
    fresh interpreters (`python -m components.stages.ingest.workers`), not forks: the ingest process has
    reader and writer threads (and Arrow's), and multiprocessing's spawn would import the
    caller's main module again."""
    depth = depth or 2 * workers
    needed = [*PREPARE_READS, *(["source"] if settings.select_sources else [])]
    procs = [subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": _import_path()}) for _ in range(workers)]
    in_order: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def feed() -> None:
        try:
            for proc in procs:
                _send(proc, (cleaning, settings))
            for i, raw in enumerate(batches):
                _send(procs[i % len(procs)], raw.select(needed))  # then queued: every queued batch has an answer
                while not stop.is_set():
                    try:
                        in_order.put(raw, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            in_order.put(done)
        except BaseException as exc:  # the reader's error (or a dead worker's pipe), re-raised below
            in_order.put(exc)
        finally:
            for proc in procs:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True, name="ingest-feeder")
    feeder.start()
    try:
        i = 0
        while (raw := in_order.get()) is not done:
            if isinstance(raw, BaseException):
                raise raw
            yield raw, _receive(procs[i % len(procs)])
            i += 1
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                in_order.get_nowait()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        feeder.join()


def _import_path() -> str:
    """This package's root first, so that a worker imports the same code as its parent."""
    root = str(Path(__file__).resolve().parents[3])
    return os.pathsep.join([root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])


def _send(proc: subprocess.Popen, item) -> None:
    pickle.dump(item, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.flush()


def _receive(proc: subprocess.Popen) -> Prepared:
    try:
        kind, value = pickle.load(proc.stdout)  # nosec B301: a worker this process started
    except EOFError:
        raise RuntimeError(f"an ingest worker (pid {proc.pid}) exited with code {proc.wait()} before answering; "
                           f"its error is above in the log") from None
    if kind == "error":
        raise value
    return value


def _serve() -> None:
    """A worker: the cleaning config and source settings, then batches until the input ends."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    cleaning, settings = pickle.load(source)  # nosec B301: from the ingest process that started it
    select = source_selector(settings)
    while True:
        try:
            raw = pickle.load(source)  # nosec B301: from the ingest process that started it
        except EOFError:
            return
        try:
            answer = ("ok", prepare(raw, cleaning, select, drop_unchanged_text=True))
        except Exception as exc:  # the parent raises it where it reads the answer
            answer = ("error", exc)
        try:  # whole before written: a pickle that fails halfway must not leave half an answer in the pipe
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            data = pickle.dumps(("error", RuntimeError(f"ingest worker: {answer[1]!r}")))
        sink.write(data)
        sink.flush()


if __name__ == "__main__":
    _serve()
