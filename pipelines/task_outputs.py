"""Reading what a kfp.local run's tasks wrote, by the names the components themselves declare.

kfp.local puts task T's output artifact O at `<run dir>/.../<T>/<O>` (tasks inside a condition sit
one folder deeper). Each lookup goes through the component object, so an output renamed in a
component's signature fails here with that name instead of a glob that silently finds nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _task_dirs(run_dir: Path, component) -> list[Path]:
    return sorted(p for p in run_dir.glob(f"**/{component.name}") if p.is_dir())


def _check(component, name: str) -> None:
    declared = component.component_spec.outputs or {}
    if name not in declared:
        raise KeyError(f"{component.name} has no output {name!r} (its outputs: {sorted(declared)})")


def output_path(run_dir: Path, component, name: str) -> Path | None:
    """The file of output `name` of the (one) task of `component`, or None when the task did not run
    (a step inside a condition that was false)."""
    _check(component, name)
    for task_dir in _task_dirs(run_dir, component):
        if (task_dir / name).is_file():
            return task_dir / name
    return None


def output_json(run_dir: Path, component, name: str) -> Any:
    path = output_path(run_dir, component, name)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: {component.name} wrote no {name!r}")
    return json.loads(path.read_text())


def output_metadata(run_dir: Path, component, name: str) -> dict[str, Any]:
    """An output artifact's metadata (Metrics keep their values only there), from the task's
    executor_output.json; {} when the task did not run."""
    _check(component, name)
    for task_dir in _task_dirs(run_dir, component):
        path = task_dir / "executor_output.json"
        if path.exists():
            arts = json.loads(path.read_text()).get("artifacts", {}).get(name, {}).get("artifacts", [])
            if arts:
                return arts[0].get("metadata", {})
    return {}
