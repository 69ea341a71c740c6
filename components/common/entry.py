"""The one way an entry point (conveyor, kubectl conveyor, the training entrypoint) ends.

A ConveyorError is its message on one line and its class's exit code (components.common.errors);
an interrupt is 130; anything else is a bug: one line and 70 (EX_SOFTWARE), the traceback only
with CONVEYOR_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from components.common.errors import ConveyorError

INTERNAL_ERROR = 70
INTERRUPTED = 130


def run_main(prog: str, work: Callable[[], int]) -> int:
    try:
        return work()
    except ConveyorError as exc:
        sys.stderr.write(f"{prog}: error: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return INTERRUPTED
    except Exception as exc:
        if os.environ.get("CONVEYOR_DEBUG"):
            raise
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                         " (a bug: rerun with CONVEYOR_DEBUG=1 for the traceback)\n")
        return INTERNAL_ERROR


# A process that does not go through run_main (a KFP task: kfp's executor_main runs the component
# body) ends on an uncaught ConveyorError with this one line and the class's exit code; the local
# runner reads the line back (pipelines/local_run.py), a cluster user sees it as the task's last log
# line and exit status.
FAILURE_PREFIX = "conveyor-failure: "


def failure_line(exc: ConveyorError) -> str:
    return FAILURE_PREFIX + json.dumps({"error": type(exc).__name__, "exit_code": exc.exit_code,
                                        "message": exc.message})


def read_failure(text: str) -> tuple[str, str] | None:
    """(class name, message) of the last failure line in a task log, if it has one."""
    for line in reversed(text.splitlines()):
        at = line.find(FAILURE_PREFIX)
        if at >= 0:
            try:
                found = json.loads(line[at + len(FAILURE_PREFIX):])
                return found["error"], found["message"]
            except (ValueError, KeyError, TypeError):
                continue
    return None


def _report_uncaught(kind, exc, tb, _default=sys.excepthook):
    if isinstance(exc, ConveyorError):
        sys.stdout.flush()
        sys.stderr.write(failure_line(exc) + "\n")
        sys.stderr.flush()
        os._exit(exc.exit_code)  # the class's code, not Python's 1 (atexit handlers would not change it)
    _default(kind, exc, tb)


def report_uncaught_failures() -> None:
    sys.excepthook = _report_uncaught
