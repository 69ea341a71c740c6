"""Drift-verdict benchmark: the monitor's vectorized verdict vs Evidently's DataDriftPreset on the
same 1M-row windows of engineered text features, same thresholds; timed side by side, verdicts
compared column by column.

The windows are bootstrap resamples (1M rows per side) of the features of real SpamAssassin
messages: reference = the reference collection (easy-ham-1, spam-1), drifted = the production
collection (easy-ham-2, spam-2), and, for a no-drift case, a second resample of the reference."""

from __future__ import annotations

import time

import numpy as np

from components.config import load_config
from components.featurize.core import Featurizer
from components.ingest.executor import read_clean
from components.monitor.drift import evidently_verdict, fast_verdict
from components.monitor.features import NUMERICAL, encode, known_ids, text_features
from pipelines.local_run import resolve_sources


def _features(cfg, sources, featurizer, seen=None):
    table, _ = read_clean(resolve_sources(sources), cfg.data.source, cfg.cleaning)
    texts = table.column("text").to_pylist()
    encoded = encode(featurizer, texts)
    seen = known_ids(featurizer, encoded) if seen is None else seen
    feats, _, _ = text_features(featurizer, texts, seen, encoded)
    feats["label"] = np.array(table.column("label").to_pylist(), dtype=object).astype(str)
    return feats, seen


def _resample(columns, rows, seed):
    n = len(next(iter(columns.values())))
    idx = np.random.default_rng(seed).integers(0, n, rows)
    return {k: v[idx] for k, v in columns.items()}


def bench_drift(rows: int = 1_000_000) -> dict:
    cfg = load_config()
    featurizer = Featurizer(cfg.features)
    ref_base, seen = _features(cfg, cfg.data.reference, featurizer)
    prod_base, _ = _features(cfg, cfg.data.production, featurizer, seen)
    kinds = dict.fromkeys(NUMERICAL, "numerical") | {"label": "categorical"}
    reference = _resample(ref_base, rows, 1)
    cases = {"drifted (production collection)": _resample(prod_base, rows, 2),
             "no drift (reference resampled)": _resample(ref_base, rows, 3)}
    results = []
    for name, current in cases.items():
        started = time.perf_counter()
        fast = fast_verdict(reference, current, kinds)
        fast_s = time.perf_counter() - started
        started = time.perf_counter()
        slow, _ = evidently_verdict(reference, current, kinds)
        slow_s = time.perf_counter() - started
        same_columns = all(fast["columns"][c]["drifted"] == slow["columns"][c]["drifted"] for c in kinds)
        max_diff = max(abs(fast["columns"][c]["score"] - slow["columns"][c]["score"]) for c in kinds)
        results.append({"case": name, "rows_per_side": rows, "columns": len(kinds),
                        "fast_seconds": round(fast_s, 2), "evidently_seconds": round(slow_s, 2),
                        "ratio": round(fast_s / slow_s, 3),
                        "same_verdict": bool(fast["dataset_drift"] == slow["dataset_drift"] and same_columns),
                        "dataset_drift": fast["dataset_drift"], "drifted_share": round(fast["drifted_share"], 3),
                        "max_score_difference": max_diff,
                        "drifted_columns": sorted(c for c in kinds if fast["columns"][c]["drifted"])})
    return {"bench": "drift", "targets": {"ratio": "<= 0.25 with the same verdict"},
            "base_rows": {"reference": len(ref_base["chars"]), "production": len(prod_base["chars"])},
            "results": results}
