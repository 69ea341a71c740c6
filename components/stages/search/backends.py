"""Pick the search backend; the decision of which trial is best is made the same way for both."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict
from typing import Any

import yaml

from components.common import audit
from components.common.config import ClusterConfig, validate_section
from components.common.errors import ConfigError, StoreError
from components.common.storage import open_store
from components.stages.search.spec import SearchSpec, parse_spec
from components.stages.train.config import TrainingConfig
from components.tracking.runs import remove_run_files

BACKENDS = ("local", "katib")


def leaderboard_markdown(spec: SearchSpec, rows: list[dict[str, Any]], best_id: str) -> str:
    """Every trial with its configuration and last reported metrics, ranked; then the effect of each
    searched feature and architecture choice (feature-group selection shows up here)."""
    names = [p.name for p in spec.parameters]
    metric = spec.objective.name
    others = [m for m in ("macro_f1", "loss", "accuracy") if m != metric and any(m in (r.get("metrics") or {})
                                                                                 for r in rows)]
    head = f"| trial | state | {metric} | " + "".join(f"{m} | " for m in others) + " | ".join(names) + \
        " | epochs | seconds |"
    sep = "|---" * (len(names) + len(others) + 5) + "|"
    goal_max = spec.objective.goal == "maximize"
    ranked = sorted(rows, key=lambda r: (r["value"] is None, -(r["value"] or 0) if goal_max else (r["value"] or 0)))
    lines = [f"### Search: {spec.algorithm}, {len(rows)} trials, objective {metric} ({spec.objective.goal})", "",
             head, sep]
    for r in ranked:
        mark = " **best**" if r["run_id"] == best_id else ""
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        extra = "".join(f"{_fmt((r.get('metrics') or {}).get(m, ''))} | " for m in others)
        params = " | ".join(_fmt(r["params"].get(n)) for n in names)
        lines.append(f"| {r['run_id']}{mark} | {r['state']} | {value} | {extra}{params} | {r.get('epochs', '')} | "
                     f"{r.get('seconds', '')} |")
    choices = [n for n in names if n.startswith("features.") or n in ("family", "train.family")]
    for name in choices:
        groups: dict[str, list[float]] = {}
        for r in rows:
            if r["value"] is not None and name in r["params"]:
                groups.setdefault(_fmt(r["params"][name]), []).append(r["value"])
        if len(groups) < 2:
            continue
        lines += ["", f"Effect of `{name}` ({metric}, finished trials):", "",
                  "| value | trials | best | mean |", "|---|---:|---:|---:|"]
        for value, scores in sorted(groups.items(), key=lambda kv: -max(kv[1]) if goal_max else min(kv[1])):
            best = max(scores) if goal_max else min(scores)
            lines.append(f"| {value} | {len(scores)} | {best:.4f} | {sum(scores) / len(scores):.4f} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "none (group dropped)"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def remove_other_trials_files(store_uri: str, rows: list[dict[str, Any]], best_run_id: str | None) -> list[str]:
    """search.keep_trial_weights false: every trial but the best loses its model and checkpoint
    files (its record and metrics stay, saying why); one audit entry lists them."""
    store = open_store(store_uri)
    removed = []
    for row in rows:
        if row["run_id"] == best_run_id:
            continue
        if remove_run_files(store, row["run_id"], f"not the best trial of its search ({best_run_id}); "
                            "search.keep_trial_weights is false"):
            removed.append(row["run_id"])
    if removed:
        audit.append(store, "trial_files_removed", {"search_best": best_run_id}, {"runs": removed})
    return removed


def _clean_up_trials(store_uri: str, rows: list[dict[str, Any]], best_run_id: str | None, log) -> None:
    """A clean-up that fails (the store went away) is said, and the search's result stands."""
    try:
        remove_other_trials_files(store_uri, rows, best_run_id)
    except StoreError as exc:
        log(f"search: the other trials' model files were not removed ({exc.message}); the result stands")


def run_search(backend: str, store: str, dataset: str, version: str, config: dict[str, Any], run_id: str,
               log=print) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise ConfigError(f"search backend {backend!r}: expected one of {list(BACKENDS)}")
    # Refused here, before any trial or experiment exists: the spec, where trials run, and the
    # training sections every trial is given.
    spec = parse_spec(config.get("search") or {})
    cluster = validate_section(ClusterConfig, config.get("cluster") or {}, "cluster")
    TrainingConfig.of(config)
    if backend == "local":
        # lazy: Optuna, only on the local path
        from components.stages.search.local import LocalSearch

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config.yaml")
            with open(path, "w") as handle:
                yaml.safe_dump(config, handle)
            result = LocalSearch(spec, dataset, version, store, run_id, config_path=path, log=log).run()
        rows = [asdict(t) for t in result.trials]
        if not spec.keep_trial_weights:
            _clean_up_trials(store, rows, result.best_run_id, log)
        return {"backend": "local", "best_params": result.best_params, "best_value": result.best_value,
                "best_run_id": result.best_run_id, "trials": rows, "seconds": result.seconds,
                "leaderboard": leaderboard_markdown(spec, rows, result.best_run_id)}

    # lazy: the Katib and Kubernetes SDKs, only on the cluster path
    from components.stages.search.katib import build_experiment, validate_experiment
    from components.stages.search.katib_launcher import KubernetesExperimentApi, launch

    started = time.monotonic()
    manifest = build_experiment(spec, run_id=run_id, dataset=dataset, version=version, store=store,
                                cluster=cluster, config=config)
    validate_experiment(manifest)
    outcome = launch(KubernetesExperimentApi(), manifest, spec, cluster, log=log)
    rows = [{"run_id": t["name"], "state": t["condition"], "value": t["metrics"].get(spec.objective.name),
             "params": t["params"]} for t in outcome.trials]
    for r in rows:
        r["value"] = float(r["value"]) if r["value"] not in (None, "") else None
    if not spec.keep_trial_weights:
        _clean_up_trials(store, rows, outcome.best_trial, log)
    return {"backend": "katib", "experiment": outcome.experiment, "adopted": outcome.adopted,
            "best_params": outcome.best_params, "best_value": outcome.best_value or float("nan"),
            "best_run_id": outcome.best_trial, "trials": rows, "seconds": round(time.monotonic() - started, 1),
            "leaderboard": leaderboard_markdown(spec, rows, outcome.best_trial)}
