"""Search efficiency: the compute (trial-epochs) each algorithm spends before its best trial is
within 0.5 accuracy points of the best of 48 random trials, on two objectives, 10 seeds each.

"Trials to 99% of the best" rewarded luck (near-best settings are common); compute to a tight
target, against a reference no algorithm under test produced, does not. Each objective's
reference is 48 random trials of the full epoch count (seed 0, not one of the 5). Then, per seed:
random search without pruning (what a plain Katib `random` experiment does) against TPE with
median stopping (`early_stopping: medianstop`, the spec both backends run: Katib's rule, which the
local backend ports), trials one after another until the target
is met or the reference's compute is spent (then the run counts that compute, censored).

Trials run the real training loop in this process (`fit`), reporting each epoch's validation
accuracy to Optuna as the trial's metric lines do; a pruned trial stops at that epoch and its
epochs count. Objectives: the synthetic hard task (bench/training.py) and the bundled SpamAssassin
reference collection (documents cut to 200 tokens so that the 1,000-odd trainings fit in minutes).

The synthetic task has CUES cue words. With 40 (its first form) every cue is seen ~200 times and
38% of random configurations land within the tolerance of the best: the first trial decided the
race, which measures nothing. With 400, 6% do (measured: 48 random trials, best 0.662, median
0.625), so settings matter and the compute to the target says which algorithm finds them.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

EPOCHS = 4
REFERENCE_TRIALS = 48
TOLERANCE = 0.005
# Ten seeds, not five: at five, one seed decided in the first trials (the same for both algorithms,
# whose first trials are the same random draws) moved the ratio by ~0.1 (seeds 1-5 are kept, and
# their ratio is reported beside the ten's).
SEEDS = tuple(range(1, 11))
FIRST_SEEDS = 5
BOOTSTRAP = 2000  # resamples of the seeds, for the ratio's interval
CUES = 400  # the synthetic task's cue words (see the module docstring)
SPACE = [
    {"name": "lr", "type": "double", "min": 1e-4, "max": 1.0, "log": True},
    {"name": "embed_dim", "type": "discrete", "values": [8, 16, 32, 64]},
    {"name": "dropout", "type": "double", "min": 0.0, "max": 0.9},
    {"name": "batch_size", "type": "discrete", "values": [16, 64, 256]},
]
# Both TPE forms the spec offers (Katib's Optuna suggestion service has both): independent TPE, and
# multivariate TPE (the bundled configs' choice), which models the parameters jointly.
ALGORITHMS = {"random": ("random", "none"), "tpe+medianstop": ("tpe", "medianstop"),
              "multivariate-tpe+medianstop": ("multivariate-tpe", "medianstop")}


class _Pruned(Exception):
    pass


def _objective(work: Path, name: str):
    """(num_ids, classes, train, validation, TrainingConfig) of one objective."""
    from components.stages.featurize.executor import prepare_features
    from components.stages.train.config import apply_params
    from components.stages.train.data import Bags

    if name == "synthetic-hard":
        from bench.training import _prepare

        store, version, cfg = _prepare(work, 8000, hard=True, cues=CUES)
        dataset = "bench"
    else:
        from components.common.storage import FileStore
        from components.composition.config import load_config
        from components.stages.ingest.executor import ingest
        from components.stages.train.config import TrainingConfig
        from pipelines.local_run import resolve_sources

        full = load_config("configs/spamassassin.yaml")
        store = FileStore(str(work / "search-spam-store"))
        version = ingest(resolve_sources(full.data.reference), "spam", store, full.data.settings_for("reference"),
                         full.cleaning).version
        cfg = apply_params(TrainingConfig.of(full), {"features.max_tokens": 200})
        dataset = "spam"
    featurizer, tables = prepare_features(store, dataset, version, cfg.split.model_dump(mode="json"),
                                          cfg.features.model_dump(mode="json"))
    return (featurizer.num_ids, len(featurizer.labels), Bags.from_table(tables["train"]),
            Bags.from_table(tables["validation"]), cfg)


def _study(data, algorithm: str, early_stopping: str, seed: int, max_trials: int, epoch_budget: int,
           target: float | None):
    """Trials until the target is met, max_trials ran or epoch_budget epochs were spent.
    Returns (epochs to target or None, epochs spent, best, trials)."""
    import optuna

    from components.stages.search.local import distributions, make_pruner, make_sampler, parse_metric_line
    from components.stages.search.medianstop import ask, tell_early_stopped
    from components.stages.search.spec import parse_spec
    from components.stages.train.config import apply_params
    from components.stages.train.core import fit

    num_ids, classes, train, validation, cfg = data
    spec = parse_spec({"parameters": SPACE, "algorithm": algorithm, "seed": seed, "max_trials": max_trials,
                       "parallel_trials": 1, "early_stopping": {"algorithm": early_stopping,
                                                                "min_trials_required": 3, "start_step": 1}})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec), pruner=make_pruner(spec))
    spent, best, reached, trials = 0, -math.inf, None, 0
    while trials < max_trials and spent < epoch_budget:
        trial = ask(study, distributions(spec))
        trials += 1
        params = apply_params(cfg, {**trial.params, "epochs": EPOCHS, "patience": EPOCHS}).train
        observed: list[float] = []

        def report(line: str, trial=trial, observed=observed) -> None:
            value = parse_metric_line(line)["accuracy"]
            observed.append(value)
            trial.report(value, len(observed))
            if trial.should_prune():
                raise _Pruned

        pruned = False
        try:
            fit(train, validation, num_ids, classes, params, emit=report, progress=False)
        except _Pruned:
            pruned = True
        spent += len(observed)
        value = max(observed)
        if pruned:
            tell_early_stopped(study, trial, value)
        else:
            study.tell(trial, value)
        best = max(best, value)  # a pruned trial's best epoch still counts, as Katib's max strategy
        if target is not None and reached is None and best >= target:
            reached = spent
            break
    return reached, spent, best, trials


def bench_objective(work: Path, name: str, log=print) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = _objective(work, name)
    started = time.perf_counter()
    _, reference_epochs, reference_best, _ = _study(data, "random", "none", 0, REFERENCE_TRIALS,
                                                    REFERENCE_TRIALS * EPOCHS, None)
    target = reference_best - TOLERANCE
    log(f"  {name}: best of {REFERENCE_TRIALS} random trials {reference_best:.4f} "
        f"({time.perf_counter() - started:.0f} s); target {target:.4f}")
    runs = {}
    for label, (algorithm, early) in ALGORITHMS.items():
        runs[label] = []
        for seed in SEEDS:
            reached, spent, best, trials = _study(data, algorithm, early, seed, 10 * REFERENCE_TRIALS,
                                                  reference_epochs, target)
            runs[label].append({"seed": seed, "epochs_to_target": reached if reached is not None else spent,
                                "reached": reached is not None, "trials": trials, "best": round(best, 4)})
            log(f"  {name} {label} seed {seed}: {'reached' if reached else 'NOT reached'} after {spent} "
                f"trial-epochs, {trials} trials")
    mean = {label: float(np.mean([r["epochs_to_target"] for r in rows])) for label, rows in runs.items()}
    epochs = {label: [r["epochs_to_target"] for r in rows] for label, rows in runs.items()}
    rnd = epochs["random"]
    arms = {label: {"ratio": round(mean[label] / mean["random"], 3),
                    "ratio_first_seeds": round(sum(e[:FIRST_SEEDS]) / sum(rnd[:FIRST_SEEDS]), 3),
                    "ratio_interval_90": ratio_interval(e, rnd)}
            for label, e in epochs.items() if label != "random"}
    return {"objective": name, "reference_best": round(reference_best, 4), "target": round(target, 4),
            "reference_epochs": reference_epochs, "runs": runs,
            "mean_epochs_to_target": {k: round(v, 1) for k, v in mean.items()},
            "arms": arms, "seconds": round(time.perf_counter() - started, 1)}


def ratio_interval(tpe: list[int], rnd: list[int], level: float = 0.9) -> list[float]:
    """The ratio of means over seeds resampled with replacement (paired: one seed's two runs stay
    together): how far the ratio could move with other seeds."""
    rng = np.random.default_rng(0)
    tpe_a, rnd_a = np.asarray(tpe, float), np.asarray(rnd, float)
    picks = rng.integers(0, len(tpe_a), size=(BOOTSTRAP, len(tpe_a)))
    ratios = tpe_a[picks].sum(axis=1) / np.maximum(rnd_a[picks].sum(axis=1), 1)
    tail = (1 - level) / 2
    return [round(float(np.quantile(ratios, tail)), 3), round(float(np.quantile(ratios, 1 - tail)), 3)]


def bench_search_efficiency(work: Path) -> dict:
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    results = [bench_objective(work, name, log) for name in ("synthetic-hard", "spamassassin")]
    return {"bench": "search_efficiency", "targets": {"ratio": "<= 0.5"}, "epochs_per_trial": EPOCHS, "cues": CUES,
            "tolerance": TOLERANCE, "reference_trials": REFERENCE_TRIALS, "seeds": list(SEEDS), "results": results}
