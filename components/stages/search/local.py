"""Local search backend: Optuna runs the same space Katib would, trials as separate processes.

Algorithms map from Katib's names (random, tpe, multivariate-tpe, cmaes, grid; Katib runs these on
Optuna, Hyperopt or goptuna); `medianstop` is Katib's rule, ported (medianstop.py). Each trial runs
the training entrypoint in its own process and is followed through its Katib metric lines, so the
rule stops it mid-run.
`search.timeout_s` is the wall-clock budget: no trial starts after it, trials still running are
stopped, and the best finished trial wins.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from components.common.errors import SearchFailed
from components.stages.search.medianstop import KatibMedianStop, ask, tell_early_stopped
from components.stages.search.progress import SearchProgress
from components.stages.search.spec import SearchSpec

METRIC_RE = re.compile(r"(?P<name>[A-Za-z_][\w-]*)=(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def parse_metric_line(line: str) -> dict[str, float]:
    return {m["name"]: float(m["value"]) for m in METRIC_RE.finditer(line)}


def make_sampler(spec: SearchSpec):
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.algorithm in ("tpe", "multivariate-tpe"):
        # As Katib's Optuna service builds them (pkg/suggestion/v1beta1/optuna/service.py): multivariate
        # only for "multivariate-tpe" (Optuna 5 made it the default, so "tpe" must say it is not), and a
        # constant liar for trials still running; the start-up trials travel in the Experiment.
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=spec.algorithm == "multivariate-tpe",
                                          constant_liar=True, n_startup_trials=spec.startup_trials())
    if spec.algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=spec.seed)
    if spec.algorithm == "grid":
        # The grid is enqueued point by point (see LocalSearch.run): Optuna's GridSampler stops the
        # study from inside, which only works under study.optimize(), not with ask/tell.
        return optuna.samplers.RandomSampler(seed=spec.seed)
    raise ValueError(spec.algorithm)


def make_pruner(spec: SearchSpec):
    if spec.early_stopping.algorithm == "medianstop":
        return KatibMedianStop(spec.early_stopping.min_trials_required, spec.early_stopping.start_step)
    return optuna.pruners.NopPruner()


def distributions(spec: SearchSpec) -> dict[str, Any]:
    out = {}
    for p in spec.parameters:
        if p.type == "double":
            out[p.name] = FloatDistribution(p.min, p.max, log=p.log, step=None if p.log else p.step)
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.min), int(p.max), log=p.log,
                                          step=1 if p.log else int(p.step or 1))
        else:
            out[p.name] = CategoricalDistribution(p.values)
    return out


@dataclass
class TrialRow:
    number: int
    run_id: str
    params: dict[str, Any]
    state: str
    value: float | None
    epochs: int
    seconds: float
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class _Watched:
    """What a trial's metric lines showed: its best observation, last epoch and metrics, and
    whether the pruner stopped it."""

    best: float | None = None
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    pruned: bool = False


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_value: float
    best_run_id: str
    trials: list[TrialRow]
    algorithm: str
    seconds: float


class LocalSearch:
    def __init__(self, spec: SearchSpec, dataset: str, version: str, store: str, run_prefix: str,
                 config_path: str | None = None, fixed_params: dict[str, Any] | None = None,
                 log=lambda _msg: None):
        self.spec, self.dataset, self.version, self.store = spec, dataset, version, store
        self.run_prefix, self.config_path = run_prefix, config_path
        self.fixed_params = fixed_params or {}
        self.log = log
        self._lock = threading.Lock()
        self._failed = 0
        self._stop = threading.Event()
        self._deadline = float("inf")  # set when the search starts: spec.timeout_s from then
        self.progress = SearchProgress(spec, log)

    def _command(self, run_id: str, params: dict[str, Any]) -> list[str]:
        cmd = [sys.executable, "-m", "components.stages.train.entrypoint", "--store", self.store, "--dataset",
               self.dataset, "--version", self.version, "--run-id", run_id,
               "--params", json.dumps({**self.fixed_params, **params})]
        if self.config_path:
            cmd += ["--config", self.config_path]
        if self.spec.objective.cv_folds:
            cmd += ["--cv-folds", str(self.spec.objective.cv_folds)]
        return cmd

    def _run_trial(self, study, dists) -> TrialRow | None:
        with self._lock:
            if self._stop.is_set() or time.monotonic() >= self._deadline:
                return None  # a target reached, too many failures, or the budget spent: start no more
            trial = ask(study, dists)
        self.progress.trial_started(trial.number, trial.params)
        run_id = f"{self.run_prefix}-t{trial.number:03d}"
        started = time.monotonic()
        # stderr to a file: an unread pipe would block a chatty trial once its buffer filled.
        err_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed below, after the process)
        proc = subprocess.Popen(self._command(run_id, trial.params), stdout=subprocess.PIPE, stderr=err_file,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out_of_budget = threading.Event()

        def stop_for_budget():
            out_of_budget.set()
            proc.terminate()

        budget_timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), stop_for_budget)
        budget_timer.daemon = True
        budget_timer.start()
        watched = self._watch(proc, trial)
        code = proc.wait()
        budget_timer.cancel()
        err_file.seek(0)
        stderr = err_file.read()
        err_file.close()
        seconds = round(time.monotonic() - started, 2)
        row = TrialRow(trial.number, run_id, trial.params, "", watched.best, watched.epochs, seconds,
                       metrics=watched.metrics)
        with self._lock:
            self._conclude(study, trial, row, watched.pruned, out_of_budget.is_set() and code != 0, code, stderr)
        self.progress.trial_finished(trial.number, row.state, row.value, row.epochs, seconds, trial.params, row.error)
        return row

    def _watch(self, proc: subprocess.Popen, trial) -> _Watched:
        """A trial's metric lines as it prints them: each epoch's objective reported to the pruner,
        which may stop the process; the best observation kept (Katib's default metric strategy)."""
        goal_max = self.spec.objective.goal == "maximize"
        seen = _Watched()
        for line in proc.stdout:
            values = parse_metric_line(line)
            if "epoch" not in values or self.spec.objective.name not in values:
                continue
            seen.epochs, seen.metrics = int(values["epoch"]), values
            value = values[self.spec.objective.name]
            seen.best = value if seen.best is None else (max(seen.best, value) if goal_max else min(seen.best, value))
            trial.report(value, seen.epochs)
            if trial.should_prune():
                seen.pruned = True
                proc.terminate()
                break
        return seen

    def _conclude(self, study, trial, row: TrialRow, pruned: bool, stopped_at_budget: bool, code: int,
                  stderr: str) -> None:
        """Tell the study how the trial ended and set its row's state; stop the search at the target
        or past `max_failed_trials` failures. Called under the lock."""
        if pruned:
            tell_early_stopped(study, trial, row.value)
            row.state = "pruned"
        elif stopped_at_budget:
            # Stopped by the search's wall-clock budget: not a failure of the trial, and its
            # half-trained model is not a candidate.
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            row.state = "stopped"
            row.error = f"stopped at the search budget (search.timeout_s = {self.spec.timeout_s} s)"
        elif code == 0 and row.value is not None:
            study.tell(trial, row.value)
            row.state = "succeeded"
            target, goal_max = self.spec.objective.target, self.spec.objective.goal == "maximize"
            if target is not None and (row.value >= target if goal_max else row.value <= target):
                self._stop.set()
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            row.state = "failed"
            row.error = (stderr.strip().splitlines() or [f"exit code {code}"])[-1][:500]
            self._failed += 1
            if self._failed > self.spec.max_failed_trials:
                self._stop.set()

    def run(self) -> SearchResult:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        started = time.monotonic()
        self._deadline = started + self.spec.timeout_s
        direction = "maximize" if self.spec.objective.goal == "maximize" else "minimize"
        study = optuna.create_study(direction=direction, sampler=make_sampler(self.spec),
                                    pruner=make_pruner(self.spec))
        dists = distributions(self.spec)
        total = self.spec.max_trials
        if self.spec.algorithm == "grid":
            grid = self.spec.grid()
            points = [dict(zip(grid, combo, strict=True)) for combo in _product(grid)]
            for point in points[:total]:
                study.enqueue_trial(point)
            total = min(total, len(points))
        self.progress = SearchProgress(self.spec, self.log, total)
        self.progress.start()
        rows: list[TrialRow] = []
        with ThreadPoolExecutor(max_workers=self.spec.parallel_trials) as pool:
            futures = [pool.submit(self._run_trial, study, dists) for _ in range(total)]
            for f in futures:
                row = f.result()
                if row is not None:
                    rows.append(row)
        rows.sort(key=lambda r: r.number)
        if self._failed > self.spec.max_failed_trials:
            raise SearchFailed(f"search stopped: {self._failed} trials failed (limit {self.spec.max_failed_trials}); "
                               f"last error: {next(r.error for r in reversed(rows) if r.error)}")
        done = [r for r in rows if r.state == "succeeded"]
        stopped = [r for r in rows if r.state == "stopped"]
        if not done and stopped:
            raise SearchFailed(f"the search budget (search.timeout_s = {self.spec.timeout_s} s) ran out before any "
                               f"trial finished ({len(stopped)} stopped); raise timeout_s or make trials cheaper")
        if not done:
            raise SearchFailed(f"search finished with no successful trial ({len(rows)} trials: "
                               f"{', '.join(sorted({r.state for r in rows}))})")
        best = max(done, key=lambda r: r.value) if direction == "maximize" else min(done, key=lambda r: r.value)
        seconds = round(time.monotonic() - started, 2)
        self.progress.finish(best.value, best.number, seconds)
        return SearchResult(best.params, best.value, best.run_id, rows, self.spec.algorithm, seconds)


def _product(grid: dict[str, list[Any]]):
    return itertools.product(*grid.values())
