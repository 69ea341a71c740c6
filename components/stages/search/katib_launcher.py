"""Cluster search backend, part 2: launch a Katib Experiment safely and wait for its outcome.

Safe to retry: the experiment name is deterministic (run id + spec hash), an existing experiment
with the same spec is adopted instead of failing, one with another spec is refused. Waits on watch
events and the experiment's conditions (no sleeps). On failure, timeout or termination (SIGTERM,
as KFP sends when a run is terminated) the experiment is deleted so no GPU trial is left running.
Parallel trials x GPUs per trial is checked against a quota before anything is created.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from components.cluster.kube import CustomObjects, adopt_or_create
from components.common.argcodec import decode_value
from components.common.config import ClusterConfig
from components.common.errors import SearchFailed, SpecError
from components.stages.search.katib import SPEC_HASH_ANNOTATION, katib_parameter_name
from components.stages.search.progress import SearchProgress
from components.stages.search.spec import SearchSpec

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"


class ExperimentApi(Protocol):
    """The few Kubernetes calls the launcher needs (real implementation below)."""

    def get(self, name: str, namespace: str) -> dict[str, Any] | None: ...
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def delete(self, name: str, namespace: str) -> None: ...
    def watch(self, name: str, namespace: str, timeout_s: float) -> Iterator[dict[str, Any]]: ...
    def list_trials(self, name: str, namespace: str) -> list[dict[str, Any]]: ...


class KubernetesExperimentApi(CustomObjects):
    """ExperimentApi over the Kubernetes API (in-cluster config, else the current kubeconfig)."""

    def __init__(self):
        super().__init__("Experiment", GROUP, VERSION, PLURAL)

    def list_trials(self, name, namespace):
        return self.list(namespace, "trials", label_selector=f"katib.kubeflow.org/experiment={name}")


@dataclass
class KatibOutcome:
    experiment: str
    adopted: bool
    best_params: dict[str, Any]
    best_trial: str
    best_value: float | None
    reason: str
    trials: list[dict[str, Any]]


def check_quota(spec: SearchSpec, cluster: ClusterConfig) -> None:
    """Parallel trials x nodes per trial (a TrainJob's or PyTorchJob's; a Job is one pod) x GPUs
    per pod, against the quota, before anything is created."""
    nodes = 1 if cluster.trial_kind == "Job" else cluster.nodes
    need = spec.parallel_trials * nodes * cluster.gpus_per_trial
    if need > cluster.gpu_quota:
        raise SpecError(f"search.parallel_trials ({spec.parallel_trials}) x cluster.nodes ({nodes}) x "
                        f"cluster.gpus_per_trial ({cluster.gpus_per_trial}) = {need} GPUs exceeds "
                        f"cluster.gpu_quota ({cluster.gpu_quota})")


def _condition(obj: dict[str, Any]) -> tuple[str | None, str, str]:
    """The terminal condition (Succeeded/Failed) that is True, with its reason and message."""
    for cond in reversed(obj.get("status", {}).get("conditions", []) or []):
        if cond.get("type") in ("Succeeded", "Failed") and cond.get("status") == "True":
            return cond["type"], cond.get("reason", ""), cond.get("message", "")
    return None, "", ""


def launch(api: ExperimentApi, manifest: dict[str, Any], spec: SearchSpec, cluster: ClusterConfig,
           timeout_s: float | None = None, log=print) -> KatibOutcome:
    check_quota(spec, cluster)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    existing = adopt_or_create(api, manifest, SPEC_HASH_ANNOTATION, "experiment", log)
    adopted = existing is not None

    finished = False
    budget = spec.timeout_s if timeout_s is None else timeout_s
    limit_s = min(budget, cluster.experiment_timeout_s)
    wait_s = limit_s - _age_s(existing)  # an adopted experiment has used some of it already

    def on_terminate(signum, _frame):
        api.delete(name, namespace)  # no GPU trial survives a terminated pipeline run
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_terminate) if _main_thread() else None
    try:
        final = existing if existing is not None and _condition(existing)[0] else None
        out_of_time = False
        if final is None:
            progress = SearchProgress(spec, log)
            progress.start()
            for obj in api.watch(name, namespace, wait_s):
                _report_counts(progress, obj, spec)
                if _condition(obj)[0]:
                    final = obj
                    break
        if final is None:
            # Out of time: the best trial finished so far wins; deleting the experiment (below, as
            # `finished` stays False) stops the trials still running.
            current = api.get(name, namespace) or {}
            if not (current.get("status", {}).get("currentOptimalTrial", {}) or {}).get("bestTrialName"):
                raise SearchFailed(f"experiment {namespace}/{name} did not finish within {limit_s:.0f}s "
                                   "and no trial had finished; deleted it")
            log(f"experiment {namespace}/{name}: {limit_s:.0f}s budget reached; taking the best finished trial "
                "and stopping the rest")
            final, out_of_time = current, True
        state, reason, message = _condition(final)
        if out_of_time:
            state, reason = "Succeeded", "BudgetExhausted"
        if state == "Failed":
            raise SearchFailed(f"experiment {namespace}/{name} failed: {reason}: {message}")
        optimal = final.get("status", {}).get("currentOptimalTrial", {}) or {}
        assignments = {a["name"]: decode_value(a["value"]) for a in optimal.get("parameterAssignments", []) or []}

        by_katib = {katib_parameter_name(p.name): p.name for p in spec.parameters}
        best_params = {by_katib.get(k, k): v for k, v in assignments.items()}
        value = None
        for metric in (optimal.get("observation", {}) or {}).get("metrics", []) or []:
            if metric.get("name") == spec.objective.name:
                value = float(metric.get("max" if spec.objective.goal == "maximize" else "min", metric.get("latest")))
        trials = [{"name": t["metadata"]["name"],
                   "params": {by_katib.get(a["name"], a["name"]): decode_value(a["value"])
                              for a in t.get("spec", {}).get("parameterAssignments", [])},
                   "condition": _trial_state(t),
                   "metrics": {m["name"]: m.get("latest") for m in
                               (t.get("status", {}).get("observation", {}) or {}).get("metrics", []) or []}}
                  for t in api.list_trials(name, namespace)]
        finished = not out_of_time
        return KatibOutcome(name, adopted, best_params, optimal.get("bestTrialName", ""), value, reason, trials)
    finally:
        if not finished:
            api.delete(name, namespace)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _report_counts(progress: SearchProgress, obj: dict[str, Any], spec: SearchSpec) -> None:
    status = obj.get("status", {}) or {}
    optimal = status.get("currentOptimalTrial", {}) or {}
    best = None
    for metric in (optimal.get("observation", {}) or {}).get("metrics", []) or []:
        if metric.get("name") == spec.objective.name:
            found = metric.get("max" if spec.objective.goal == "maximize" else "min", metric.get("latest"))
            best = float(found) if found not in (None, "") else None
    progress.counts(int(status.get("trialsRunning", 0) or 0), int(status.get("trialsSucceeded", 0) or 0),
                    int(status.get("trialsEarlyStopped", 0) or 0),
                    int(status.get("trialsFailed", 0) or 0) + int(status.get("trialsKilled", 0) or 0),
                    best, optimal.get("bestTrialName") or None)


def _age_s(obj: dict[str, Any] | None) -> float:
    created = (obj or {}).get("metadata", {}).get("creationTimestamp")
    if not created:
        return 0.0
    # the Kubernetes client gives a datetime; a raw object gives RFC 3339 text
    if isinstance(created, dt.datetime):
        when = created
    else:
        when = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return max(0.0, (dt.datetime.now(dt.UTC) - when).total_seconds())


def _trial_state(trial: dict[str, Any]) -> str:
    for cond in reversed(trial.get("status", {}).get("conditions", []) or []):
        if cond.get("status") == "True":
            return cond.get("type", "")
    return "Pending"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
