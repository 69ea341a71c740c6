"""Test-set evaluation of a registered model: overall, per class, per slice, calibration, latency.

Candidate and champion are scored on the same rows (the candidate's test split), so their
numbers are directly comparable. Pure: models and tables in, metrics out (`executor.py` reads
the store).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pyarrow as pa

from components.common.errors import InputError

LENGTH_BUCKETS = ((0, 200, "chars<200"), (200, 1000, "chars200-1k"), (1000, 5000, "chars1k-5k"),
                  (5000, 10**12, "chars>=5k"))
ECE_BINS = 10


def predict_proba(loaded, texts: pa.Array, batch_size: int = 512) -> tuple[np.ndarray, float]:
    """Class probabilities for `texts` with a registered model; also the mean ms per batch of 64."""
    probs = [loaded.predict_proba(texts.slice(start, batch_size)) for start in range(0, len(texts), batch_size)]
    # Latency of the serving-sized unit (a batch of 64 texts, featurize + forward), median of 5.
    sample = texts.slice(0, min(64, len(texts)))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        loaded.predict_proba(sample)
        timings.append((time.perf_counter() - started) * 1000)
    out = np.concatenate(probs) if probs else np.empty((0, len(loaded.featurizer.labels)))
    return out, float(np.median(timings))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    if not len(labels):
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_report(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, Any]:
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(names):
        tp = confusion[i, i]
        fp = confusion[:, i].sum() - tp
        fn = confusion[i, :].sum() - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[i, :].sum())}
        f1s.append(f1)
    accuracy = float((labels == preds).mean()) if len(labels) else float("nan")
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
            "per_class": per_class, "confusion_matrix": confusion.tolist(), "rows": len(labels)}


def slice_names(chars: np.ndarray, sources: list[str]) -> dict[str, np.ndarray]:
    """Boolean masks per slice: text-length buckets and each source/group."""
    slices = {name: (chars >= lo) & (chars < hi) for lo, hi, name in LENGTH_BUCKETS}
    src = np.asarray(sources, dtype=object)
    for value in sorted(set(sources)):
        slices[f"source={value}"] = src == value
    return slices


def evaluate(loaded, table: pa.Table, min_slice_rows: int = 30) -> dict[str, Any]:
    """Metrics of one model on rows with columns text, label, source."""
    names = loaded.featurizer.labels
    texts = table.column("text").combine_chunks()
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index.get(v, -1) for v in table.column("label").to_pylist()], dtype=np.int64)
    if (labels < 0).any():
        unknown = sorted({v for v in table.column("label").to_pylist() if v not in index})
        raise InputError(f"evaluation rows carry labels {unknown} the model does not know ({names})")
    probs, latency_ms = predict_proba(loaded, texts)
    preds = probs.argmax(axis=1) if len(probs) else np.empty(0, np.int64)
    report = classification_report(labels, preds, names)
    report["ece"] = expected_calibration_error(probs, labels)
    report["batch64_latency_ms"] = latency_ms
    chars = np.asarray(pa.compute.utf8_length(texts), dtype=np.int64)
    report["slices"] = {}
    for name, mask in slice_names(chars, table.column("source").to_pylist()).items():
        if mask.sum() >= min_slice_rows:  # too few rows give noise, not evidence
            sub = classification_report(labels[mask], preds[mask], names)
            report["slices"][name] = {"accuracy": sub["accuracy"], "macro_f1": sub["macro_f1"], "rows": sub["rows"]}
    report["labels"] = names
    return report
