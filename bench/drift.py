"""Drift-verdict benchmark: the monitor's vectorized verdict vs Evidently's DataDriftPreset on the
same 1M-row windows of engineered text features, same thresholds; timed side by side, verdicts
compared column by column.

The windows are bootstrap resamples (1M rows per side) of the features of real SpamAssassin
messages: reference = the reference collection (easy-ham-1, spam-1), drifted = the production
collection (easy-ham-2, spam-2), and, for a no-drift case, a second resample of the reference."""

from __future__ import annotations

import time

import numpy as np

from components.composition.config import load_config
from components.stages.featurize.core import Featurizer
from components.stages.ingest.executor import read_clean
from components.stages.monitor.core import evidently_verdict, fast_verdict
from components.stages.monitor.features import NUMERICAL, encode, known_ids, text_features
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


def bench_redaction() -> dict:
    """The monitor's input-drift verdict on the bundled corpus with the inference log's text raw vs
    redacted (monitor.log_text), side by side: reference = the reference collection, current = the
    production collection (the real drift), and the reference against itself split in two (no
    drift). Redacted runs redact both sides, as the monitor does. Also: redaction throughput, and
    email addresses left in the production collection's texts after it."""
    import re

    from components.common.redact import EMAIL, redact
    from components.stages.monitor.core import js_histograms

    cfg = load_config()
    featurizer = Featurizer(cfg.features)
    texts = {}
    for side, sources in (("reference", cfg.data.reference), ("production", cfg.data.production)):
        table, _ = read_clean(resolve_sources(sources), cfg.data.source, cfg.cleaning)
        texts[side] = table.column("text").to_pylist()
    started = time.perf_counter()
    redacted = {side: [redact(t) for t in rows] for side, rows in texts.items()}
    redact_s = time.perf_counter() - started
    chars = sum(len(t) for rows in texts.values() for t in rows)
    # the reference's files come sorted (ham, then spam): two random halves of it are the no-drift case
    order = np.random.default_rng(0).permutation(len(texts["reference"]))
    halves = {side: ([rows[i] for i in order[: len(order) // 2]], [rows[i] for i in order[len(order) // 2:]])
              for side, rows in (("raw", texts["reference"]), ("redacted", redacted["reference"]))}
    kinds = dict.fromkeys(NUMERICAL, "numerical")

    def verdict(reference: list[str], current: list[str]) -> dict:
        ref_encoded = encode(featurizer, reference)
        seen = known_ids(featurizer, ref_encoded)
        ref_feat, ref_hist, _ = text_features(featurizer, reference, seen, ref_encoded)
        cur_feat, cur_hist, _ = text_features(featurizer, current, seen)
        result = fast_verdict(ref_feat, cur_feat, kinds)
        columns = {c: result["columns"][c] for c in kinds}
        hist = js_histograms(ref_hist, cur_hist)
        columns["feature_hash_histogram"] = {"score": hist, "drifted": bool(hist >= 0.1)}
        share = sum(c["drifted"] for c in columns.values()) / len(columns)
        return {"dataset_drift": share >= cfg.monitor.drift_share, "drifted_share": round(share, 3),
                "drifted_columns": sorted(c for c, v in columns.items() if v["drifted"]),
                "scores": {c: round(float(v["score"]), 4) for c, v in columns.items()}}

    results = []
    cases = {"drifted (production collection)": ((texts["reference"], texts["production"]),
                                                 (redacted["reference"], redacted["production"])),
             "no drift (reference, two random halves)": (halves["raw"], halves["redacted"])}
    for case, (raw_pair, redacted_pair) in cases.items():
        raw, red = verdict(*raw_pair), verdict(*redacted_pair)
        results.append({"case": case, "raw": raw, "redacted": red,
                        "same_verdict": raw["dataset_drift"] == red["dataset_drift"]})
    placeholders = {}
    for t in redacted["production"]:
        for p in re.findall(r"<(EMAIL|PHONE|IP|CARD|IBAN|URL_USER)>", t):
            placeholders[p] = placeholders.get(p, 0) + 1
    return {"bench": "redaction", "targets": {"same_verdict": "raw and redacted logs give the same drift verdict"},
            "rows": {side: len(rows) for side, rows in texts.items()},
            "texts_with_email_raw": sum(bool(EMAIL.search(t)) for t in texts["production"]),
            "texts_with_email_redacted": sum(bool(EMAIL.search(t)) for t in redacted["production"]),
            "placeholders_in_production": placeholders,
            "redaction": {"texts_per_second": round(sum(map(len, texts.values())) / redact_s),
                          "mb_per_second": round(chars / redact_s / 1e6, 2)},
            "results": results}
