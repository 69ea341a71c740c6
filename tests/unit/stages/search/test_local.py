"""The local (Optuna) backend: parallel trial processes, AutoML choices, the cross-validated
objective, the budget and failed trials."""

from __future__ import annotations

import io
import json
import math

import pytest

from components.common import audit
from components.common.config import ClusterConfig
from components.common.errors import SearchFailed
from components.common.logs import StepLog
from components.stages.search.katib import build_experiment, validate_experiment
from components.stages.search.spec import parse_spec
from components.tracking.runs import read_run
from tests.support.search_specs import with_


@pytest.mark.slow  # make test-slow: ~30 s; make run's search runs two trials at a time
def test_local_search_runs_parallel_trial_processes(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=3).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=4, parallel_trials=2,
                          early_stopping={"algorithm": "none"})
    lines = io.StringIO()
    result = run_search("local", file_store.uri, "toy", version, cfg, "search-1",
                        log=StepLog("search", "search-1", stream=lines, fmt="json"))
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    kinds = [e["fields"]["event"] for e in events]
    # per-trial progress: the start, each trial started and finished (with the best so far), the end
    assert kinds[0] == "search_started" and kinds[-1] == "search_finished"
    assert kinds.count("trial_started") == 4 and kinds.count("trial_finished") == 4
    finished = [e["fields"] for e in events if e["fields"]["event"] == "trial_finished"]
    assert [f["done"] for f in finished] == [1, 2, 3, 4] and finished[-1]["eta_s"] == 0
    assert finished[-1]["best_value"] == result["best_value"]
    assert all(e["step"] == "search" and e["run_id"] == "search-1" for e in events)
    assert len(result["trials"]) == 4 and all(t["state"] == "succeeded" for t in result["trials"]), \
        [(t["run_id"], t["state"], t["error"]) for t in result["trials"]]
    assert result["best_value"] == max(t["value"] for t in result["trials"])
    assert set(result["best_params"]) == {"lr", "embed_dim"} and "**best**" in result["leaderboard"]
    assert len({t["run_id"] for t in result["trials"]}) == 4  # each trial is its own training run
    # The best trial keeps its model; the others keep their records and metrics, not their files.
    best = result["best_run_id"]
    assert file_store.exists(f"runs/{best}/model/weights.pt") and not file_store.exists(f"runs/{best}/checkpoint.pt")
    for trial in result["trials"]:
        if trial["run_id"] != best:
            record = read_run(file_store, trial["run_id"])
            assert not file_store.list(f"runs/{trial['run_id']}/") and record["history"]
            assert record["artifacts"]["weights"] is None and best in record["files_removed"]
    [entry] = [e for e in audit.read_entries(file_store) if e["event"] == "trial_files_removed"]
    assert sorted(entry["details"]["runs"]) == sorted(t["run_id"] for t in result["trials"] if t["run_id"] != best)

    cfg["search"] = with_(algorithm="grid", max_trials=4, parallel_trials=2,
                          parameters=[{"name": "embed_dim", "type": "discrete", "values": [8, 16]}])
    grid = run_search("local", file_store.uri, "toy", version, cfg, "grid-1", log=lambda _m: None)
    assert sorted(t["params"]["embed_dim"] for t in grid["trials"]) == [8, 16]  # the grid, once each


def test_automl_grid_over_feature_groups_and_families_shows_each_choice(tmp_path, file_store):
    """Feature selection is part of the search: a configuration may drop the word or the character
    n-gram group; the leaderboard shows each group choice and model family with its scores."""
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=2).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="grid", max_trials=4, parallel_trials=2, early_stopping={"algorithm": "none"},
                          parameters=[
                              {"name": "features.word_ngrams", "type": "categorical", "values": [[1, 2], []]},
                              {"name": "features.char_ngrams", "type": "categorical", "values": [[3, 4]]},
                              {"name": "family", "type": "categorical", "values": ["embedding_bag", "cnn"]}])
    result = run_search("local", file_store.uri, "toy", version, cfg, "automl-1", log=lambda _m: None)
    combos = {(str(t["params"]["features.word_ngrams"]), t["params"]["family"]) for t in result["trials"]}
    assert combos == {("[1, 2]", "embedding_bag"), ("[1, 2]", "cnn"), ("[]", "embedding_bag"), ("[]", "cnn")}
    assert all(t["state"] == "succeeded" for t in result["trials"])
    board = result["leaderboard"]
    assert "Effect of `features.word_ngrams`" in board and "Effect of `family`" in board
    assert "| [] | 2 |" in board and "| cnn | 2 |" in board
    # the same space on Katib: list values travel as shell-safe (percent-encoded) JSON that the
    # trial's --set decodes back
    experiment = build_experiment(parse_spec(cfg["search"]), run_id="r", dataset="toy", version=version,
                                  store="s3://x", cluster=ClusterConfig())
    spaces = {p["name"]: p["feasibleSpace"] for p in experiment["spec"]["parameters"]}
    assert spaces["features-word_ngrams"]["list"] == ["%5B1,2%5D", "%5B%5D"]
    from components.stages.search.katib_launcher import decode_value

    assert [decode_value(v) for v in spaces["features-word_ngrams"]["list"]] == [[1, 2], []]


def test_a_cross_validated_objective_is_what_both_backends_optimize(tmp_path, file_store):
    """objective.cv_folds: Katib reads cv_accuracy from the trial's metric lines; locally Optuna
    does the same, and the best trial is the best k-fold mean, recorded with its folds."""
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    spec = parse_spec(with_(max_trials=2, objective={"metric": "accuracy", "cv_folds": 3},
                            early_stopping={"algorithm": "none"}))
    exp = build_experiment(spec, run_id="cv", dataset="toy", version="v1", store="s3://b", cluster=ClusterConfig())
    validate_experiment(exp)
    assert exp["spec"]["objective"]["objectiveMetricName"] == "cv_accuracy"
    assert "accuracy" in exp["spec"]["objective"]["additionalMetricNames"] and "earlyStopping" not in exp["spec"]
    command = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--cv-folds") + 1] == "3"

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=2).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=2, parallel_trials=2,
                          objective={"metric": "accuracy", "cv_folds": 3}, early_stopping={"algorithm": "none"})
    result = run_search("local", file_store.uri, "toy", version, cfg, "cv-1", log=lambda _m: None)
    assert all(t["state"] == "succeeded" for t in result["trials"]), result["trials"]
    for trial in result["trials"]:
        record = read_run(file_store, trial["run_id"])
        assert record["cv"]["folds"] == 3 and trial["value"] == record["cv"]["accuracy"]["mean"]
    assert result["best_value"] == max(t["value"] for t in result["trials"])
    assert "cv_accuracy" in result["leaderboard"]


def test_local_budget_stops_starting_trials_and_keeps_the_best_finished(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=1).model_dump(mode="json", exclude_none=True)
    # The budget is sized from this machine's own trial time (a loaded CI runner took > 12 s for
    # one trial): three trials' worth lets at least one finish and stops the rest of the 30.
    cfg["search"] = with_(algorithm="random", max_trials=1, parallel_trials=1, early_stopping={"algorithm": "none"})
    one_trial_s = run_search("local", file_store.uri, "toy", version, cfg, "budget-0", log=lambda _m: None)["seconds"]
    budget = math.ceil(3 * one_trial_s) + 1
    cfg["search"] = with_(algorithm="random", max_trials=30, parallel_trials=1, timeout_s=budget,
                          early_stopping={"algorithm": "none"})
    result = run_search("local", file_store.uri, "toy", version, cfg, "budget-1", log=lambda _m: None)
    states = [t["state"] for t in result["trials"]]
    seen = [(t["state"], t["seconds"], t["error"]) for t in result["trials"]]
    assert "succeeded" in states and len(states) < 30, seen
    # At most the one trial running when the budget ran out is stopped; "stopped" means it was
    # terminated (a trial that exits 0 counts as succeeded), so it did not run on to its end.
    assert set(states) <= {"succeeded", "stopped"} and states.count("stopped") <= 1, seen
    assert result["best_value"] == max(t["value"] for t in result["trials"] if t["state"] == "succeeded")

    cfg["search"] = with_(algorithm="random", max_trials=4, parallel_trials=2, timeout_s=1)
    with pytest.raises(SearchFailed, match=r"budget \(search.timeout_s = 1 s\) ran out before any trial finished "
                                           r"\(2 stopped\)"):
        run_search("local", file_store.uri, "toy", version, cfg, "budget-2", log=lambda _m: None)


def test_failed_trials_count_against_the_limit(tmp_path, file_store):
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=1).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="random", max_trials=3, parallel_trials=1, max_failed_trials=1)
    # Every trial process fails at run time (the version is gone): the search stops at the limit.
    with pytest.raises(SearchFailed, match=r"2 trials failed \(limit 1\).*no version 'deleted-version'"):
        run_search("local", file_store.uri, "toy", "deleted-version", cfg, "fail-1", log=lambda _m: None)


def _katib_optuna_sampler(experiment: dict):
    """The sampler Katib v0.19's Optuna suggestion service builds from an Experiment
    (pkg/suggestion/v1beta1/optuna/service.py, OptimizerConfiguration.convert_algorithm_spec): its
    settings table, random_state read as the seed, and the constant liar and multivariate flags it
    adds by name. Optuna 4 and earlier, which Katib's image runs, default to independent TPE."""
    import optuna

    algorithm = experiment["spec"]["algorithm"]
    name = algorithm["algorithmName"]
    table = {"n_startup_trials": int, "n_ei_candidates": int, "seed": int}
    config = {}
    for setting in algorithm.get("algorithmSettings") or []:
        if setting["name"] in table:
            config[setting["name"]] = table[setting["name"]](setting["value"])
        elif setting["name"] == "random_state":
            config["seed"] = int(setting["value"])
    config["constant_liar"] = True
    config["multivariate"] = name == "multivariate-tpe"
    return optuna.samplers.TPESampler(**config)


def test_tpe_samplers_match_what_katib_builds_from_the_experiment_it_is_sent():
    """Each backend's sampler for the same spec suggests the same trials: the local one, and the
    one Katib's Optuna service makes of the Experiment built for the cluster (its start-up trials
    included: without them Katib's Optuna runs 10 random trials, all of a short search). Both ask
    with the experiment's whole space, as Katib's service does."""
    import optuna

    from components.stages.search.local import distributions, make_sampler

    def asked(sampler, space) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for _ in range(10):
            trial = study.ask(space)
            study.tell(trial, trial.params["dropout"] - abs(math.log10(trial.params["lr"]) + 2))
        return [t.params for t in study.trials]

    params = [{"name": "lr", "type": "double", "min": 1e-4, "max": 1.0, "log": True},
              {"name": "dropout", "type": "double", "min": 0.0, "max": 0.9},
              {"name": "batch_size", "type": "discrete", "values": [16, 64, 256]}]
    found = {}
    for name in ("tpe", "multivariate-tpe"):
        spec = parse_spec({"parameters": params, "algorithm": name, "seed": 3, "max_trials": 10})
        experiment = build_experiment(spec, run_id="r", dataset="toy", version="v1", store="s3://b",
                                      cluster=ClusterConfig())
        validate_experiment(experiment)  # the settings pass the services' ValidateAlgorithmSettings
        found[name] = asked(make_sampler(spec), distributions(spec))
        if name == "multivariate-tpe":
            assert found[name] == asked(_katib_optuna_sampler(experiment), distributions(spec))
        else:
            # The shipped katib-config serves tpe with Hyperopt, which refuses n_startup_trials (its
            # TPE starts with one batch of random trials): the seed is all it is sent.
            assert experiment["spec"]["algorithm"]["algorithmSettings"] == [{"name": "random_state", "value": "3"}]
    assert found["tpe"][:4] == found["multivariate-tpe"][:4]  # the same random start-up trials
    assert found["tpe"][4:] != found["multivariate-tpe"][4:]
    short = parse_spec({"parameters": params, "algorithm": "multivariate-tpe", "max_trials": 8})
    exp = build_experiment(short, run_id="r", dataset="toy", version="v1", store="s3://b", cluster=ClusterConfig())
    assert {"name": "n_startup_trials", "value": "4"} in exp["spec"]["algorithm"]["algorithmSettings"]


def test_medianstop_stops_a_real_trial_process_at_start_step(tmp_path, file_store):
    """The local backend applies Katib's rule to a running trial: the first trial (a learning rate
    that learns) sets the rule; the second (one that cannot learn in an epoch) is stopped after its
    first epoch, and its process ends there. The sampler still gets its result, as on Katib."""
    from components.stages.search.backends import run_search
    from tests.support.training_data import ingest_corpus, small_config

    version = ingest_corpus(tmp_path, file_store)
    cfg = small_config(epochs=4, patience=4).model_dump(mode="json", exclude_none=True)
    cfg["search"] = with_(algorithm="grid", max_trials=2, parallel_trials=1,
                          early_stopping={"algorithm": "medianstop", "min_trials_required": 1, "start_step": 1},
                          parameters=[{"name": "lr", "type": "discrete", "values": [0.05, 1e-7]}])
    result = run_search("local", file_store.uri, "toy", version, cfg, "stop-1", log=lambda _m: None)
    learns, stuck = result["trials"]
    assert (learns["params"]["lr"], learns["state"], learns["epochs"]) == (0.05, "succeeded", 4)
    assert (stuck["params"]["lr"], stuck["state"], stuck["epochs"]) == (1e-7, "pruned", 1), stuck
    assert result["best_run_id"] == learns["run_id"]
