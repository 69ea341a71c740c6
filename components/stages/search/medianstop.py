"""Katib's median stopping rule, ported for the local backend, so that `early_stopping: medianstop`
stops the same trials on both backends.

Katib splits the rule between two components; both parts are ported:
- the early-stopping service (pkg/earlystopping/v1beta1/medianstop/service.py) gives each trial,
  when it is created, a rule value: once `min_trials_required` trials have *succeeded* (early-stopped
  ones do not count), the mean over them of each one's average of its first `start_step` objective
  values (a mean, though the algorithm is called median); before that, no rule, and the trial runs
  to the end;
- the metrics collector in the trial's pod (cmd/metricscollector/v1beta1/file-metricscollector)
  keeps the trial's best objective value so far and compares it with the rule once, when the
  objective has been reported `start_step` times: strictly worse stops the trial.
An early-stopped trial is still a result for the suggestion service: Katib hands it to the sampler
with its best observation (pkg/suggestion/v1beta1/internal/trial.py takes Succeeded and
EarlyStopped trials), so the local backend tells Optuna the same (`EARLY_STOPPED` marks it, and
keeps it out of later rules).

Optuna's own MedianPruner, used before, differs in each point: it compares at every step from the
warm-up on, against the median of other trials' values at that step, computed when it checks.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

EARLY_STOPPED = "katib_early_stopped"  # user attribute of a trial the rule stopped
RULE = "katib_medianstop_rule"  # user attribute: the rule value the trial got when it was created


def rule_value(history: list[list[float]], min_trials_required: int, start_step: int) -> float | None:
    """The rule for a new trial, from the objective values of the trials that succeeded before it
    was created (each list in report order); None while fewer than `min_trials_required` have."""
    averages = [sum(values[:start_step]) / len(values[:start_step]) for values in history if values]
    if len(averages) < min_trials_required:
        return None
    return sum(averages) / len(averages)


def stops(values: list[float], rule: float | None, start_step: int, maximize: bool) -> bool:
    """Whether the collector stops a trial that has reported `values` so far: checked once, at the
    `start_step`-th report, with the best value so far strictly worse than the rule."""
    if rule is None or len(values) != start_step:
        return False
    best = max(values) if maximize else min(values)
    return best < rule if maximize else best > rule


class KatibMedianStop(optuna.pruners.BasePruner):
    """Katib's medianstop as an Optuna pruner. A trial's intermediate values are its objective
    reports in order; its rule is the one `ask` recorded when the trial was created."""

    def __init__(self, min_trials_required: int = 3, start_step: int = 4):
        # Katib's defaults when a setting is left out
        self.min_trials_required, self.start_step = min_trials_required, start_step

    def rule(self, study: optuna.Study) -> float | None:
        """The rule a trial created now gets, from the trials that have succeeded so far."""
        history = [[t.intermediate_values[s] for s in sorted(t.intermediate_values)]
                   for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if not t.user_attrs.get(EARLY_STOPPED)]
        return rule_value(history, self.min_trials_required, self.start_step)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        # A trial not created through `ask` gets the rule of now
        rule = trial.user_attrs[RULE] if RULE in trial.user_attrs else self.rule(study)
        return stops(values, rule, self.start_step, study.direction == optuna.study.StudyDirection.MAXIMIZE)


def ask(study: optuna.Study, distributions: dict) -> optuna.Trial:
    """A new trial; under this rule, with the rule of its creation recorded, as Katib gives it."""
    trial = study.ask(distributions)
    if isinstance(study.pruner, KatibMedianStop):
        trial.set_user_attr(RULE, study.pruner.rule(study))
    return trial


def tell_early_stopped(study: optuna.Study, trial: optuna.Trial, best: float) -> None:
    """An early-stopped trial, told as Katib tells its sampler: a result with its best observation
    (marked, so that later rules leave it out as Katib's do)."""
    trial.set_user_attr(EARLY_STOPPED, True)
    study.tell(trial, best)
