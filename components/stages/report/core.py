"""Data-quality report for a dataset version: statistics, quarantine summary and, against a
reference version, Evidently drift on text descriptors. Output: self-contained HTML + JSON verdict.

Drift runs on engineered per-document descriptors (length, word count, character-class shares)
plus the label and source distributions, not on raw text: Evidently's raw-text drift trains a
classifier per column and is far slower without telling a pipeline more.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.common.errors import InputError
from components.stages.report.config import ReportConfig

NUMERIC = ["chars", "words", "mean_word_len", "upper_share", "digit_share", "non_ascii_share", "url_count"]
CATEGORICAL = ["label", "source"]
# `source` names where rows came from (folder, file, topic): a new batch's sources differ by
# construction, so it is reported in the statistics but is not a drift signal.
DRIFT_CATEGORICAL = ["label"]


def descriptors(table: pa.Table) -> pa.Table:
    """Per-document numeric descriptors computed column-wise."""
    text = table.column("text")
    chars = pc.utf8_length(text)
    words = pc.list_value_length(pc.utf8_split_whitespace(text))
    safe_chars = pc.max_element_wise(chars, 1)

    def share(pattern: str) -> pa.Array:
        stripped = pc.utf8_length(pc.replace_substring_regex(text, pattern, ""))
        return pc.divide(pc.cast(pc.subtract(chars, stripped), pa.float64()), pc.cast(safe_chars, pa.float64()))

    non_space = pc.utf8_length(pc.replace_substring_regex(text, r"\s", ""))
    return pa.table({
        "chars": pc.cast(chars, pa.float64()),
        "words": pc.cast(words, pa.float64()),
        "mean_word_len": pc.divide(pc.cast(non_space, pa.float64()),
                                   pc.cast(pc.max_element_wise(words, 1), pa.float64())),
        "upper_share": share(r"\p{Lu}"),
        "digit_share": share(r"\p{Nd}"),
        "non_ascii_share": share(r"[^\x00-\x7f]"),
        "url_count": pc.cast(pc.count_substring_regex(text, r"https?://"), pa.float64()),
        "label": table.column("label"),
        "source": table.column("source"),
    })


def _sample(table: pa.Table, max_rows: int, seed: int = 0) -> pa.Table:
    if table.num_rows <= max_rows:
        return table
    idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, max_rows, replace=False))
    return table.take(pa.array(idx))


def statistics(table: pa.Table) -> dict[str, Any]:
    desc = descriptors(table)
    out: dict[str, Any] = {"rows": table.num_rows}
    for col in NUMERIC:
        values = desc.column(col).to_numpy()
        if len(values):
            out[col] = {"min": float(values.min()), "p50": float(np.percentile(values, 50)),
                        "p95": float(np.percentile(values, 95)), "max": float(values.max()),
                        "mean": float(values.mean())}
    for col in CATEGORICAL:
        out[col] = {d["values"]: d["counts"] for d in pc.value_counts(table.column(col)).to_pylist()}
    return out


def drift_columns(snapshot) -> tuple[dict[str, dict[str, Any]], float]:
    """Per-column drift and the drifted share from an Evidently DataDriftPreset snapshot."""
    columns, share = {}, None
    for metric in snapshot.dict()["metrics"]:
        name = metric.get("metric_name", "")
        if name.startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif match := re.fullmatch(r"ValueDrift\((.*)\)", name):
            # e.g. ValueDrift(column=a,threshold=0.1,method=Wasserstein distance (normed)): the key
            # order depends on the preset's arguments
            fields = dict(part.split("=", 1) for part in match[1].split(","))
            method, threshold, score = fields["method"], float(fields["threshold"]), float(metric["value"])
            # p-value tests drift below the threshold; distances drift at or above it.
            drifted = score < threshold if "p_value" in method else score >= threshold
            columns[fields["column"]] = {"method": method, "score": score, "threshold": threshold,
                                         "drifted": bool(drifted)}
    if share is None:
        share = sum(c["drifted"] for c in columns.values()) / max(len(columns), 1)
    return columns, share


def drift(current: pa.Table, reference: pa.Table, config: ReportConfig) -> tuple[dict[str, Any], Any]:
    """Evidently DataDriftPreset on descriptors; returns (verdict, snapshot)."""
    # lazy: Evidently loads in seconds; only its report needs it
    from evidently import DataDefinition, Dataset, Report

    # lazy: Evidently loads in seconds; only its report needs it
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    columns_used = NUMERIC + DRIFT_CATEGORICAL
    cur = descriptors(_sample(current, config.max_rows)).select(columns_used).to_pandas()
    ref = descriptors(_sample(reference, config.max_rows)).select(columns_used).to_pandas()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=DRIFT_CATEGORICAL)
    report = Report([DataSummaryPreset(), DataDriftPreset(drift_share=config.drift_share)])
    snapshot = report.run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                          reference_data=Dataset.from_pandas(ref, data_definition=definition))
    columns, share = drift_columns(snapshot)
    verdict = {"dataset_drift": share >= config.drift_share, "drifted_share": share,
               "drift_share_threshold": config.drift_share, "columns": columns,
               "rows_compared": {"current": len(cur), "reference": len(ref)}}
    return verdict, snapshot


def build_report(table: pa.Table, manifest: dict[str, Any], reference: pa.Table | None,
                 reference_manifest: dict[str, Any] | None, config: ReportConfig,
                 drift_rows: pa.Table | None = None) -> tuple[dict, str]:
    """(verdict JSON, self-contained HTML) for one version, optionally against a reference.

    `drift_rows` (default: all of `table`) are the rows compared with the reference."""
    if table.num_rows == 0:
        raise InputError(f"dataset {manifest['dataset']} version {manifest['version']} has no rows to report on")
    verdict: dict[str, Any] = {
        "dataset": manifest["dataset"], "version": manifest["version"],
        "rows": manifest["rows"], "statistics": statistics(table), "drift": None,
    }
    evidently_html = ""
    if reference is not None:
        verdict["reference_version"] = reference_manifest["version"]
        current = table if drift_rows is None else drift_rows
        verdict["drift"], snapshot = drift(current, reference, config)
        evidently_html = snapshot_html(snapshot)
    return verdict, _render_html(verdict, evidently_html)


def snapshot_html(snapshot) -> str:
    """An Evidently snapshot as one self-contained HTML page."""

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "evidently.html")
        snapshot.save_html(path)
        with open(path, encoding="utf-8") as handle:
            return handle.read()


def _render_html(verdict: dict[str, Any], evidently_html: str) -> str:
    """A small page of our own (counts, reasons, statistics) with Evidently's report embedded."""
    esc = html.escape
    rows = verdict["rows"]
    reasons = "".join(f"<tr><td>{esc(k)}</td><td>{n}</td></tr>" for k, n in rows.get("by_reason", {}).items())
    stats = verdict["statistics"]
    numeric = "".join(
        f"<tr><td>{esc(c)}</td>" + "".join(f"<td>{stats[c][k]:.3g}</td>" for k in ("min", "p50", "p95", "max"))
        + "</tr>" for c in NUMERIC if c in stats)
    labels = "".join(f"<tr><td>{esc(str(k))}</td><td>{n}</td></tr>" for k, n in stats["label"].items())
    drift_block = "<p>No reference version given: no drift check.</p>"
    if verdict["drift"]:
        d = verdict["drift"]
        cols = "".join(f"<tr><td>{esc(c)}</td><td>{esc(x['method'])}</td><td>{x['score']:.4f}</td>"
                       f"<td>{x['threshold']}</td><td>{'DRIFT' if x['drifted'] else 'ok'}</td></tr>"
                       for c, x in d["columns"].items())
        drift_block = (f"<p><b>Dataset drift: {'YES' if d['dataset_drift'] else 'no'}</b> — "
                       f"{d['drifted_share']:.0%} of columns drifted (threshold {d['drift_share_threshold']:.0%}) "
                       f"vs reference {esc(verdict['reference_version'])}.</p><table><tr><th>column</th>"
                       f"<th>method</th><th>score</th><th>threshold</th><th></th></tr>{cols}</table>")
    embedded = ""
    if evidently_html:
        embedded = ("<h2>Evidently report</h2><iframe style='width:100%;height:1400px;border:0' srcdoc=\""
                    + esc(evidently_html, quote=True) + "\"></iframe>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Data report {esc(verdict['dataset'])}
{esc(verdict['version'])}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>Dataset {esc(verdict['dataset'])} — version {esc(verdict['version'])}</h1>
<p>Rows read {rows['read']}, accepted {rows['accepted']}, quarantined {rows['quarantined']}, total in version
{rows['total']}.</p><h2>Quarantine reasons</h2><table>{reasons or '<tr><td>none</td></tr>'}</table>
<h2>Labels</h2><table>{labels}</table><h2>Text statistics</h2><table><tr><th></th><th>min</th><th>p50</th>
<th>p95</th><th>max</th></tr>{numeric}</table><h2>Drift</h2>{drift_block}{embedded}
<script type="application/json" id="verdict">{esc(json.dumps(verdict, default=str))}</script></body></html>"""
