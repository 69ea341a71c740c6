"""Evaluate executor: load the candidate and the champion from the registry and score both on the
test split the split step wrote."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from components.common.errors import ConveyorError, InputError, NotFoundError
from components.common.storage import Store
from components.stages.evaluate.artifacts import Evaluation, Scores
from components.stages.evaluate.core import evaluate
from components.stages.evaluate.explain import ExplainLimits, explain_many, importance_of, occlusion_effects
from components.stages.featurize.executor import prepare_features
from components.stages.registry.store import load, resolve_version, write_cross_validation, write_explanations
from components.tracking.runs import read_run

IMPORTANCE_ROWS = 200  # held-out documents whose occlusion effects are averaged for the model card
IMPORTANCE_TOKENS = 32  # distinct tokens occluded per document for the importance
EXAMPLES = 4  # explained test documents in the gate report


def evaluate_candidate(store: Store, model_name: str, candidate: str, test: pa.Table,
                       data: dict[str, Any], cv_folds: int = 0) -> Evaluation:
    """Candidate and current champion (if any) scored on the same rows. `data` names them:
    {"dataset", "version", "split"} as the split step's artifact metadata carries it.
    `cv_folds` >= 2: also the candidate configuration's k-fold estimate (components.stages.train.cv)."""
    where = f"dataset {data['dataset']}@{data['version']}"
    if test.num_rows == 0:
        raise InputError(f"{where} has an empty test split: nothing to evaluate on")
    cand = load(store, model_name, candidate)
    scores = Scores(version=cand.card["version"], **evaluate(cand, test))
    dataset = {"name": data["dataset"], "version": data["version"]}
    scores.explanations = explain_candidate(cand, test)
    write_explanations(store, model_name, cand.card["version"], {
        **scores.explanations["importance"], "dataset": dataset, "split": "test"})
    if cv_folds:
        scores.cv = cross_validate_candidate(store, cand.card, cv_folds)
        write_cross_validation(store, model_name, cand.card["version"], scores.cv)
    result = Evaluation(dataset=dataset, rows=test.num_rows, split=data.get("split") or {}, candidate=scores,
                        champion=None)
    try:
        champ = load(store, model_name, "champion")
    except NotFoundError:
        return result
    except ConveyorError as exc:  # e.g. a model saved by an older, incompatible featurizer format
        result.champion_unusable = {"version": resolve_version(store, model_name, "champion"),
                                    "reason": exc.message}
        return result
    if champ.card["version"] != cand.card["version"]:
        result.champion = Scores(version=champ.card["version"], **evaluate(champ, test))
    return result


def cross_validate_candidate(store: Store, card: dict[str, Any], k: int) -> dict[str, Any]:
    """The k-fold estimate of the configuration a model card records, on the dataset version it
    was trained on (the feature cache of its split and features), each fold trained for the
    epochs its run chose."""
    # lazy: torch loads in ~1 s; only cross-validation trains here
    from components.stages.train.config import TrainParams
    from components.stages.train.cv import cross_validate

    params, dataset = card["params"], card["dataset"]
    featurizer, tables = prepare_features(store, dataset["name"], dataset["version"], params["split"],
                                          params["features"])
    try:
        epochs = read_run(store, card["run_id"])["best_epoch"] or params["train"]["epochs"]
    except NotFoundError:
        epochs = params["train"]["epochs"]
    return cross_validate(tables, featurizer.num_ids, len(featurizer.labels), TrainParams(**params["train"]), k,
                          params["split"]["salt"], epochs)


def explain_candidate(loaded, test: pa.Table, importance_rows: int = IMPORTANCE_ROWS,
                      examples: int = EXAMPLES) -> dict[str, Any]:
    """Global token importance over `importance_rows` test documents spread evenly over the split
    (its order follows the sources, so a head would hold one folder), and a few explained examples
    among them: the first correctly predicted document of each class, then the first mistakes."""
    rows = np.unique(np.linspace(0, test.num_rows - 1, min(importance_rows, test.num_rows)).astype(np.int64))
    sample = test.take(pa.array(rows))
    docs = [loaded.featurizer.tokenize(t) for t in sample.column("text").to_pylist()]
    labels = loaded.featurizer.labels
    score = loaded.predict_log_proba_tokenized
    effects = occlusion_effects(docs, score, IMPORTANCE_TOKENS)
    importance = importance_of(effects, labels, IMPORTANCE_TOKENS)
    truth = sample.column("label").to_pylist()
    predicted = [labels[int(np.argmax(base))] for base, _units, _effects in effects]  # each document's own row
    first_correct: dict[str, int] = {}
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        if t == p:
            first_correct.setdefault(t, i)
    mistakes = [i for i, (t, p) in enumerate(zip(truth, predicted, strict=True)) if t != p]
    chosen = ([first_correct[label] for label in labels if label in first_correct] + mistakes)[:examples]
    explained = explain_many([docs[i] for i in chosen], score, labels, ExplainLimits(top_k=5))
    return {"importance": importance, "examples": [
        {"doc_id": sample.column("doc_id")[i].as_py(), "label": truth[i], "predicted": e["label"],
         "probability": round(e["probabilities"][e["label"]], 4), "top_tokens": e["top_tokens"][e["label"]],
         "complete": e["complete"]}
        for i, e in zip(chosen, explained, strict=True)]}
