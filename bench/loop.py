"""Where `conveyor run`'s time goes: the loop on a fresh store, one row per phase (each KFP task of
each pipeline, the production replay, the embedded store's start and compaction), from the run's
own task log and summary. Every check still runs; this only measures them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - (Executing task|Task) .*?'([a-z0-9-]+)'")
PIPELINE = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - (Running pipeline|Pipeline)\b.*?'([a-z0-9-]+)'")
COLOR = re.compile(r"\x1b\[[0-9;]*m")


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def phases(run_dir: Path) -> dict:
    """Per-pipeline task durations (kfp.local runs tasks one at a time) and the gaps between
    pipelines, from a `conveyor run` folder (tasks.log, summary.json)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows, started, pipeline, last_end, finished = [], {}, None, None, None
    for raw in (run_dir / "tasks.log").read_text().splitlines():
        line = COLOR.sub("", raw)
        if m := PIPELINE.match(line):
            at = _seconds(*m.groups()[:3])
            if m[4] == "Running pipeline":
                pipeline = m[5]
                if last_end is not None:  # the loop's own work: the production replay after training
                    rows.append({"pipeline": "(between pipelines)", "phase": f"after {finished}",
                                 "seconds": round(at - last_end, 1)})
            else:
                last_end, finished = at, m[5]
            continue
        if (m := TASK.match(line)) and pipeline:
            at = _seconds(*m.groups()[:3])
            if m[4] == "Executing task":
                started[m[5]] = at
            elif m[5] in started:
                rows.append({"pipeline": pipeline, "phase": m[5], "seconds": round(at - started.pop(m[5]), 1)})
    total = summary["seconds"]
    accounted = sum(r["seconds"] for r in rows)
    replay = next((s["replay"]["seconds"] for s in summary["steps"] if "replay" in s), None)
    return {"total_s": total, "rows": rows, "outside_pipelines_s": round(total - accounted, 1), "replay_s": replay,
            "store_footprint": summary.get("store_footprint")}


# The store-footprint goal holds on every bundled corpus; the time goal is `make run`'s (the default).
OTHER_CORPORA = {"tweets": "configs/tweets.yaml"}


def _run(folder: Path, *extra: str) -> tuple[dict, float, list[str]]:
    """One `conveyor run` on a fresh embedded store: its summary, wall seconds and decision lines."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--workdir", str(folder / "runs"), "--json",
                           *extra], cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    decisions = [line.strip() for line in done.stderr.splitlines()
                 if any(k in line for k in ("gate:", "production release", "decision:", "registered:"))]
    return json.loads(done.stdout), wall, decisions


def bench_loop(work: Path) -> dict:
    """One `conveyor run` on a fresh embedded store, then its phases; then each other bundled corpus's
    run on a fresh store of its own, for its total and its store footprint."""
    summary, wall, decisions = _run(work / "loop")
    result = phases(Path(summary["summary_path"]).parent)
    others = {}
    for name, config in OTHER_CORPORA.items():
        other, other_wall, other_decisions = _run(work / f"loop-{name}", "--config", config)
        others[name] = {"config": config, "total_s": other["seconds"], "wall_s": round(other_wall, 1),
                        "store_footprint": other.get("store_footprint"), "decisions": other_decisions}
    return {"bench": "loop", "targets": {"total_s": "<= 180", "store_object_mib": "<= 300 on every bundled corpus"},
            "wall_s": round(wall, 1), **result, "decisions": decisions, "other_corpora": others}
