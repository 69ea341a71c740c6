"""What a running search tells its user: each trial started, finished with its metric, pruned or
failed, with the best so far and an ETA from the budget. Both backends report through it (Optuna
per trial, Katib from the experiment's trial counts), so the lines read the same."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from components.common.logs import emit
from components.stages.search.spec import SearchSpec


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


class SearchProgress:
    def __init__(self, spec: SearchSpec, log: Callable[..., Any], total: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.spec, self.log, self.clock = spec, log, clock
        self.total = total or spec.max_trials
        self.metric = spec.objective.name
        self.maximize = spec.objective.goal == "maximize"
        self.started_at = clock()
        self.done = 0
        self.running = 0
        self.seconds: list[float] = []
        self.best: tuple[float, Any] | None = None  # (value, trial)
        self._counts: tuple | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        emit(self.log, f"search: {self.total} trials, {self.spec.parallel_trials} in parallel, {self.spec.algorithm}, "
                       f"{self.spec.objective.goal} {self.metric}, budget {self.spec.timeout_s} s",
             event="search_started", total=self.total, parallel=self.spec.parallel_trials,
             budget_s=self.spec.timeout_s)

    def eta_s(self) -> float | None:
        """Seconds until the search ends: the trials left at the mean trial time, `parallel` at a
        time, never past the budget. None before any trial has finished."""
        elapsed = self.clock() - self.started_at
        left_in_budget = max(0.0, self.spec.timeout_s - elapsed)
        if not self.seconds:
            return None
        mean = sum(self.seconds) / len(self.seconds)
        rounds = math.ceil(max(0, self.total - self.done) / self.spec.parallel_trials)
        return min(rounds * mean, left_in_budget)

    def _tail(self) -> tuple[str, dict[str, Any]]:
        eta = self.eta_s()
        best = f"best {self.metric} {_fmt(self.best[0])} (trial {self.best[1]})" if self.best else "no best yet"
        text = f"{self.done}/{self.total} done; {best}; ETA " + (f"{eta:.0f} s" if eta is not None else "unknown")
        fields = {"done": self.done, "total": self.total, "running": self.running,
                  "best_value": self.best[0] if self.best else None, "best_trial": self.best[1] if self.best else None,
                  "eta_s": None if eta is None else round(eta, 1)}
        return text, fields

    def trial_started(self, trial: Any, params: dict[str, Any]) -> None:
        with self._lock:
            self.running += 1
            _, fields = self._tail()
        emit(self.log, f"trial {trial} started: {_params(params)}", event="trial_started", trial=trial,
             params=params, **fields)

    def trial_finished(self, trial: Any, state: str, value: float | None, epochs: int, seconds: float,
                       params: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
            self.done += 1
            self.seconds.append(seconds)
            if state == "succeeded" and value is not None and (
                    self.best is None or (value > self.best[0] if self.maximize else value < self.best[0])):
                self.best = (value, trial)
            text, fields = self._tail()
        what = {"succeeded": f"finished: {self.metric} {_fmt(value)}", "pruned": f"pruned at epoch {epochs}"
                + (f" ({self.metric} {_fmt(value)})" if value is not None else ""),
                "stopped": "stopped at the budget", "failed": f"failed: {error or 'see its log'}"}.get(state, state)
        emit(self.log, f"trial {trial} {what} in {seconds:.0f} s; {text}", event="trial_finished", trial=trial,
             state=state, value=value, epochs=epochs, seconds=seconds, params=params or {}, **fields)

    def counts(self, running: int, succeeded: int, pruned: int, failed: int, best_value: float | None,
               best_trial: str | None) -> None:
        """Katib: the experiment's trial counts changed (one line per change, not per watch event)."""
        key = (running, succeeded, pruned, failed, best_value, best_trial)
        with self._lock:
            if key == self._counts:
                return
            self._counts = key
            finished = succeeded + pruned + failed
            if finished > self.done:
                per_trial = (self.clock() - self.started_at) / max(1, math.ceil(finished / self.spec.parallel_trials))
                self.seconds.extend([per_trial] * (finished - self.done))
            self.done, self.running = finished, running
            if best_value is not None:
                self.best = (best_value, best_trial)
            text, fields = self._tail()
        emit(self.log, f"trials: {running} running, {succeeded} succeeded, {pruned} early-stopped, {failed} failed; "
                       f"{text}", event="trial_counts", succeeded=succeeded, pruned=pruned, failed=failed, **fields)

    def finish(self, best_value: float | None, best_trial: Any, seconds: float) -> None:
        emit(self.log, f"search done in {seconds:.0f} s: {self.done} trials, best {self.metric} {_fmt(best_value)} "
                       f"(trial {best_trial})", event="search_finished", done=self.done, total=self.total,
             best_value=best_value, best_trial=best_trial, seconds=seconds)
