"""Katib's medianstop, ported: the service's rule (a mean of succeeded trials' first-`start_step`
averages, frozen when a trial is created) and the collector's check (once, at the `start_step`-th
report, best so far strictly worse). Expected values are worked by hand from the upstream code
named in components/stages/search/medianstop.py."""

from __future__ import annotations

import optuna
import pytest

from components.stages.search.medianstop import KatibMedianStop, ask, rule_value, stops, tell_early_stopped

SPACE = {"x": optuna.distributions.FloatDistribution(0, 1)}


def test_rule_is_the_mean_of_first_step_averages_once_enough_trials_succeeded():
    history = [[0.5, 0.7, 0.9], [0.6, 0.6], [0.9, 1.0]]
    # averages of the first 2 values: 0.6, 0.6, 0.95; their mean (a median would be 0.6)
    assert rule_value(history, 3, 2) == pytest.approx((0.6 + 0.6 + 0.95) / 3)
    assert rule_value(history, 4, 2) is None
    assert rule_value([[0.4]], 1, 3) == pytest.approx(0.4)  # fewer reports than start_step: all of them


@pytest.mark.parametrize(("values", "maximize", "stopped"), [
    ([0.6, 0.65], True, True),        # best 0.65 < 0.7 at the second report
    ([0.8, 0.6], True, False),        # the best so far counts, not the last
    ([0.7, 0.7], True, False),        # strictly worse only
    ([0.6], True, False),             # not yet at start_step
    ([0.6, 0.65, 0.66], True, False),  # past it: the collector checks once
    ([0.8, 0.75], False, True),       # minimizing: best 0.75 > 0.7
    ([0.8, 0.65], False, False),
])
def test_the_collector_checks_once_at_start_step(values, maximize, stopped):
    assert stops(values, 0.7, 2, maximize) is stopped
    assert stops(values, None, 2, maximize) is False  # no rule: the trial runs to its end


def _run(study, values, *, stop_expected=None):
    """One trial reporting `values`; told as the local backend tells it. Returns the trial."""
    trial = ask(study, SPACE)
    return _finish(study, trial, values, stop_expected)


def _finish(study, trial, values, stop_expected=None):
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            assert stop_expected in (None, True)
            tell_early_stopped(study, trial, max(values[:step]))
            return True
    assert stop_expected in (None, False)
    study.tell(trial, max(values))
    return False


def test_early_stopped_trials_are_results_for_the_sampler_but_not_for_later_rules():
    study = optuna.create_study(direction="maximize", pruner=KatibMedianStop(min_trials_required=2, start_step=2))
    assert _run(study, [0.3, 0.3]) is False  # no rule yet: a weak trial runs to its end
    study = optuna.create_study(direction="maximize", pruner=KatibMedianStop(min_trials_required=2, start_step=2))
    _run(study, [0.5, 0.6, 0.7], stop_expected=False)
    _run(study, [0.7, 0.8, 0.8], stop_expected=False)
    # rule: mean(0.55, 0.75) = 0.65
    assert _run(study, [0.6, 0.62, 0.99], stop_expected=True) is True
    stopped = study.trials[-1]
    assert stopped.state == optuna.trial.TrialState.COMPLETE and stopped.value == 0.62  # Katib tells it so
    # Counted, the stopped trial would lower the rule to mean(0.55, 0.75, 0.61) = 0.637 and let 0.64
    # through; left out, the rule stays 0.65.
    assert _run(study, [0.64, 0.64], stop_expected=True) is True


def test_a_trial_keeps_the_rule_it_was_created_with():
    study = optuna.create_study(direction="maximize", pruner=KatibMedianStop(min_trials_required=2, start_step=2))
    _run(study, [0.5, 0.6])
    _run(study, [0.7, 0.8])
    early = ask(study, SPACE)          # created with the rule 0.65
    _run(study, [0.95, 0.95])          # succeeds while it runs: the rule of later trials is 0.75
    assert _finish(study, early, [0.64, 0.66]) is False
    assert _run(study, [0.7, 0.72]) is True
