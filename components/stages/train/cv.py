"""k-fold cross-validation of a training configuration over the training pool (the train and
validation splits; the test split stays held out).

Folds are `components.stages.split.core.folds` of each doc_id. Each fold trains on the other k-1 folds for
a fixed number of epochs (the candidate's own best epoch: no early stopping, which would pick the
epoch on the fold it scores) with the same seed and parameters, then the served form of its weights
scores the fold. The featurizer is the candidate's, fitted on the train split: hashing learns
nothing from it; a `vocabulary` featurizer has seen the held-out fold's words (say so when reading
its estimate).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from components.stages.split.core import folds
from components.stages.train.config import TrainParams
from components.stages.train.core import classification_metrics, fit, predict_logits
from components.stages.train.data import Bags
from components.stages.train.models import served_model


def cross_validate(tables: dict[str, pa.Table], num_ids: int, num_classes: int, params: TrainParams, k: int,
                   salt: str, epochs: int) -> dict[str, Any]:
    """`tables`: the split's feature rows (doc_id, label_id, ids) by split name; the pool is train
    and validation. Returns cv_summary's estimate with every fold."""
    pool = pa.concat_tables([tables["train"], tables["validation"]])
    fold = folds(pool.column("doc_id"), k, salt)
    fixed = params.model_copy(update={"epochs": epochs, "patience": epochs})
    per_fold = []
    for f in range(k):
        held = Bags.from_table(pool.filter(pa.array(fold == f)))
        train = Bags.from_table(pool.filter(pa.array(fold != f)))
        if len(held) == 0 or len(train) == 0:
            raise ValueError(f"cross-validation: fold {f} of {k} is empty ({len(pool)} rows); use fewer folds")
        result = fit(train, held, num_ids, num_classes, fixed, emit=lambda _line: None, progress=False,
                     early_stopping=False)
        model = served_model(fixed.model_dump(), num_ids, num_classes, result.state_dict)
        metrics = classification_metrics(predict_logits(model, held, torch.device("cpu")), held.labels, num_classes)
        per_fold.append({"fold": f, "rows": len(held), "train_rows": len(train),
                         "accuracy": round(metrics["accuracy"], 6), "macro_f1": round(metrics["macro_f1"], 6)})
    return {**cv_summary(per_fold), "epochs": epochs, "salt": salt, "rows": int(np.sum([r["rows"] for r in per_fold]))}


def cv_summary(per_fold: list[dict[str, Any]], metrics: tuple[str, ...] = ("accuracy", "macro_f1"),
               confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample std and the one-sided lower confidence bound (Student t over the k fold scores:
    mean - t(confidence, k-1) * std / sqrt(k)) of each metric, with the folds themselves."""
    # lazy: scipy loads in ~0.5 s; only cross-validation needs it
    from scipy import stats

    k = len(per_fold)
    out: dict[str, Any] = {"folds": k, "confidence": confidence, "per_fold": per_fold}
    for metric in metrics:
        values = np.array([f[metric] for f in per_fold], dtype=np.float64)
        std = float(values.std(ddof=1)) if k > 1 else 0.0
        lower = float(values.mean() - stats.t.ppf(confidence, k - 1) * std / np.sqrt(k)) if k > 1 else float("nan")
        out[metric] = {"mean": round(float(values.mean()), 6), "std": round(std, 6), "lower": round(lower, 6)}
    return out
