"""Monitoring executor: the logged inference window vs the champion's training reference.

Signals
  input_drift       engineered text features of the logged requests (components.stages.monitor.features)
                    plus the feature-id histogram, Evidently's tests, vectorized on every row
  prediction_drift  predicted-class shares and confidence, vs the champion's own predictions on the
                    reference sample
  accuracy_drop     live accuracy on the window's requests that have delayed labels
                    (feedback/<model>/*.parquet: request_id, label), vs the champion's test accuracy
Too few logged rows (trigger.min_samples) gives status "insufficient_data", never a drift alarm.

The log keeps text as monitor.log_text says (`text_mode` on each row). Redacted rows are compared
with a reference redacted the same way, so the placeholders are never mistaken for drift; rows
kept hashed or without text give no input features (input drift is then not judged, the other
signals are). Rows older than monitor.retention_days are deleted by `expire_logs` (audit-logged).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common import audit
from components.common.layout import feedback_key, feedback_prefix, inference_log_prefix
from components.common.redact import redact
from components.dataset import versioning as v
from components.stages.monitor.config import MonitorConfig
from components.stages.monitor.core import evidently_verdict, fast_verdict, js_histograms
from components.stages.monitor.features import NUMERICAL, encode, known_ids, summary, text_features
from components.stages.registry.store import load
from components.stages.serve.logging_sink import LOG_SCHEMA
from components.stages.split.config import SplitConfig
from components.stages.split.core import split_table


def read_window(store, model: str, version: str, start: dt.datetime, end: dt.datetime) -> pa.Table:
    """Logged rows of one model version with start <= ts < end (day folders outside are skipped)."""
    prefix = inference_log_prefix(model, version)
    days = {(start + dt.timedelta(days=i)).strftime("%Y-%m-%d") for i in range((end - start).days + 2)}
    tables = []
    for key in store.list(prefix):
        day = key[len(prefix):].split("/", 1)[0]
        if day in days and key.endswith(".parquet"):
            tables.append(pq.read_table(io.BytesIO(store.read_bytes(key))))
    if not tables:
        return LOG_SCHEMA.empty_table()
    table = pa.concat_tables(tables, promote_options="default")  # logs written before text_mode: null
    ts = table.column("ts")
    keep = pc.and_(pc.greater_equal(ts, start.isoformat(timespec="milliseconds")),
                   pc.less(ts, end.isoformat(timespec="milliseconds")))
    return table.filter(keep)


def comparable_texts(window: pa.Table) -> tuple[list[str], bool, int]:
    """(the window's texts for input features, whether they are redacted, rows without usable text).
    Once any row is redacted, raw rows (logged before the switch) are redacted here too, so every
    row and the reference are read the same way."""
    texts = window.column("text").to_pylist()
    modes = (window.column("text_mode").to_pylist() if "text_mode" in window.column_names
             else [None] * window.num_rows)
    modes = [m or "raw" for m in modes]  # logs written before text_mode kept raw text
    redacted = "redacted" in modes
    usable = [(t, m) for t, m in zip(texts, modes, strict=True) if m in ("raw", "redacted") and t is not None]
    out = [redact(t) if redacted and m == "raw" else t for t, m in usable]
    return out, redacted, window.num_rows - len(usable)


def expire_logs(store, model: str, retention_days: float | None, now: dt.datetime) -> dict[str, Any]:
    """Delete logged rows older than `retention_days` (whole day folders of every version whose
    day ended before the cutoff); the deletion is audit-logged with what went, never what it held."""
    if retention_days is None:
        return {"retention_days": None, "deleted_files": 0}
    cutoff = now - dt.timedelta(days=retention_days)
    prefix = inference_log_prefix(model)
    doomed: dict[str, list[str]] = {}
    for key in store.list(prefix):
        version, _, rest = key[len(prefix):].partition("/")
        day = rest.split("/", 1)[0]
        try:
            day_end = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
        except ValueError:
            continue  # not a day folder of the logger's layout: not ours to delete
        if day_end <= cutoff:
            doomed.setdefault(f"{version}/{day}", []).append(key)
    for keys in doomed.values():
        for key in keys:
            store.delete(key)
    result = {"retention_days": retention_days, "cutoff": cutoff.isoformat(timespec="seconds"),
              "deleted_files": sum(len(k) for k in doomed.values()), "deleted_days": sorted(doomed)}
    if doomed:
        audit.append(store, "inference_log_expired", {"model": model}, result)
    return result


def write_feedback(store, model: str, request_ids: list[str], labels: list[str], name: str) -> str:
    """Delayed ground truth for logged requests (what a labelling process would deliver)."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"request_id": request_ids, "label": labels}), buffer)
    key = feedback_key(model, name)
    store.write_bytes(key, buffer.getvalue())
    return key


def read_feedback(store, model: str) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(store.read_bytes(k))) for k in store.list(feedback_prefix(model))
              if k.endswith(".parquet")]
    if not tables:
        return pa.table({"request_id": pa.array([], pa.string()), "label": pa.array([], pa.string())})
    return pa.concat_tables(tables)


def reference_texts(store, card: dict[str, Any], split: SplitConfig, rows: int, seed: int = 0) -> list[str]:
    """A sample of the champion's own training split (what it learned from)."""

    ds = card["dataset"]
    ref = v.resolve(store, ds["name"], ds["version"])
    train = split_table(v.read_table(store, ref, columns=["doc_id", "text"]), split)["train"]
    if train.num_rows > rows:
        idx = np.sort(np.random.default_rng(seed).choice(train.num_rows, rows, replace=False))
        train = train.take(pa.array(idx))
    return train.column("text").to_pylist()


def monitor_window(store, model: str, cfg: MonitorConfig, split: SplitConfig, now: dt.datetime | None = None,
                   html_report: bool = True) -> tuple[dict[str, Any], str]:
    now = now or dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(hours=cfg.window_hours)
    loaded = load(store, model, "champion")
    version = loaded.card["version"]
    window = read_window(store, model, version, start, now)
    verdict: dict[str, Any] = {"model": model, "version": version, "checked_at": now.isoformat(timespec="seconds"),
                               "window": {"start": start.isoformat(timespec="seconds"),
                                          "end": now.isoformat(timespec="seconds"), "rows": window.num_rows}}
    if window.num_rows < cfg.trigger.min_samples:
        verdict.update(status="insufficient_data", signals={},
                       reason=f"{window.num_rows} logged rows in the window, fewer than min_samples "
                              f"{cfg.trigger.min_samples}: no verdict")
        return verdict, _page(verdict, None)

    featurizer = loaded.featurizer
    ref_texts = reference_texts(store, loaded.card, split, cfg.reference_rows)
    cur_texts, redacted, without_text = comparable_texts(window)
    ref_inputs = [redact(t) for t in ref_texts] if redacted else ref_texts
    ref_encoded = encode(featurizer, ref_inputs)
    seen = known_ids(featurizer, ref_encoded)
    ref_feat, ref_hist, _ = text_features(featurizer, ref_inputs, seen, ref_encoded, cfg.hash_bins)
    if len(cur_texts) >= cfg.trigger.min_samples:
        cur_feat, cur_hist, _ = text_features(featurizer, cur_texts, seen, hash_bins=cfg.hash_bins)
        kinds = dict.fromkeys(NUMERICAL, "numerical")
        inputs = fast_verdict(ref_feat, cur_feat, kinds, cfg.numeric_threshold, cfg.categorical_threshold, 1.0)
        hist_js = js_histograms(ref_hist, cur_hist)
        inputs["columns"]["feature_hash_histogram"] = {"method": "jensenshannon", "score": hist_js,
                                                       "threshold": cfg.categorical_threshold,
                                                       "drifted": bool(hist_js >= cfg.categorical_threshold)}
        share = sum(c["drifted"] for c in inputs["columns"].values()) / len(inputs["columns"])
        inputs.update(drifted_share=share, drift_share_threshold=cfg.drift_share,
                      dataset_drift=share >= cfg.drift_share)
    else:
        cur_feat = {}
        inputs = {"dataset_drift": None, "columns": {},
                  "reason": f"{len(cur_texts)} rows with text in the window ({without_text} kept hashed or without "
                            f"text, monitor.log_text), fewer than min_samples {cfg.trigger.min_samples}: input drift "
                            "not judged"}
    inputs["text"] = {"redacted": redacted, "rows_with_text": len(cur_texts), "rows_without_text": without_text}

    probs = loaded.predict_proba(ref_texts)
    ref_pred = {"predicted_label": np.array(featurizer.labels)[probs.argmax(axis=1)],
                "confidence": probs.max(axis=1).astype(np.float64)}
    cur_pred = {"predicted_label": np.array(window.column("label").to_pylist(), dtype=object).astype(str),
                "confidence": window.column("confidence").to_numpy().astype(np.float64)}
    predictions = fast_verdict(ref_pred, cur_pred, {"predicted_label": "categorical", "confidence": "numerical"},
                               cfg.numeric_threshold, cfg.categorical_threshold, drift_share=0.5)

    accuracy = _live_accuracy(store, model, window, loaded.card, cfg)
    accuracy_drop = accuracy.get("drop") is not None and accuracy["drop"] > cfg.max_accuracy_drop

    input_drift = None if inputs["dataset_drift"] is None else bool(inputs["dataset_drift"])
    verdict.update(status="judged", signals={"input_drift": input_drift,
                                             "prediction_drift": bool(predictions["dataset_drift"]),
                                             "accuracy_drop": bool(accuracy_drop) if "drop" in accuracy else None},
                   input=inputs, prediction=predictions, accuracy=accuracy,
                   feature_summary={"reference": summary(ref_feat), "current": summary(cur_feat)},
                   reference={"dataset": loaded.card["dataset"], "rows": len(ref_texts)})
    page = None
    if html_report:
        page = _evidently_page(ref_feat | ref_pred if cur_feat else ref_pred, cur_feat | cur_pred, cfg)
    return verdict, _page(verdict, page)


def _live_accuracy(store, model: str, window: pa.Table, card: dict[str, Any], cfg: MonitorConfig) -> dict[str, Any]:
    """The window's served labels against the feedback's true labels (joined on request_id); judged
    against the champion's test accuracy once `min_labelled` rows are labelled."""
    accuracy: dict[str, Any] = {"labelled": 0}
    feedback = read_feedback(store, model)
    if feedback.num_rows:
        joined = window.select(["request_id", "label"]).join(
            feedback.rename_columns(["request_id", "true_label"]), "request_id")
        n = joined.num_rows
        accuracy["labelled"] = n
        if n >= cfg.min_labelled:
            live = pc.sum(pc.equal(joined.column("label"), joined.column("true_label"))).as_py() / n
            test = card.get("metrics", {}).get("test", {}).get("accuracy")
            accuracy.update(live_accuracy=live, champion_test_accuracy=test,
                            drop=None if test is None else test - live, max_drop=cfg.max_accuracy_drop)
    return accuracy


def _evidently_page(reference: dict[str, np.ndarray], current: dict[str, np.ndarray], cfg: MonitorConfig) -> str:
    rng = np.random.default_rng(0)

    def sample(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(columns.values())))
        if n <= cfg.report_rows:
            return columns
        idx = np.sort(rng.choice(n, cfg.report_rows, replace=False))
        return {k: v[idx] for k, v in columns.items()}

    kinds = dict.fromkeys(NUMERICAL, "numerical") | {"predicted_label": "categorical", "confidence": "numerical"}
    _, page = evidently_verdict(sample(reference), sample(current), kinds, cfg.numeric_threshold,
                                cfg.categorical_threshold, cfg.drift_share, html=True)
    return page or ""


def _page(verdict: dict[str, Any], evidently_html: str | None) -> str:
    """One self-contained HTML file: the verdict on top, Evidently's report below."""
    details = {k: verdict[k] for k in ("input", "prediction", "accuracy") if k in verdict}
    head = (f"<h1>Monitoring: {html.escape(verdict['model'])} {html.escape(verdict['version'])}</h1>"
            f"<p>status: <b>{html.escape(verdict['status'])}</b>; window {html.escape(verdict['window']['start'])} "
            f"to {html.escape(verdict['window']['end'])}, {verdict['window']['rows']} rows; signals "
            f"{html.escape(json.dumps(verdict.get('signals', {})))}</p>"
            f"<pre>{html.escape(json.dumps(details, indent=1, default=str))}</pre>")
    if evidently_html is None:
        return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{head}</body></html>"
    return evidently_html.replace("<body>", f"<body><div style='padding:1em'>{head}</div>", 1)
