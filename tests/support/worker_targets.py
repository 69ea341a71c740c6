"""Worker targets for `run_workers` tests (importable by spawned children): each start appends its
pid to `starts` in the options' folder, then fails, hangs before ready, or becomes ready."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def worker(options: dict, sock, ready) -> None:
    with open(Path(options["dir"]) / "starts", "a") as f:
        f.write(f"{os.getpid()}\n")
    if options["mode"] == "fail":
        sys.exit(3)  # as a model load that raises would
    if options["mode"] == "ready":
        ready.set()
    while True:
        time.sleep(1)
