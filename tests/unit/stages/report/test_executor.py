"""Data report: statistics always; Evidently drift only against a reference, and only when real."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from components.stages.report.config import ReportConfig
from components.stages.report.executor import report_for_versions


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_drift_is_found_when_real_and_not_when_absent(tmp_path, file_store):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

    def docs(n, length, offset, label_p):
        return [{"text": " ".join(rng.choice(words, size=length)) + f" #{offset + i}",
                 "label": "spam" if rng.random() < label_p else "ham"} for i in range(n)]

    cfg = CleaningConfig()
    ref = ingest([_jsonl(tmp_path / "ref.jsonl", docs(800, 12, 0, 0.3))], "r", file_store, SourceSettings(), cfg)
    same = ingest([_jsonl(tmp_path / "same.jsonl", docs(800, 12, 10_000, 0.3))], "r", file_store,
                  SourceSettings(), cfg)
    shifted = ingest([_jsonl(tmp_path / "shift.jsonl", [
        {"text": d["text"].upper() + " 2024 2025 https://x.example", "label": d["label"]}
        for d in docs(800, 40, 20_000, 0.8)])], "r", file_store, SourceSettings(), cfg)

    html = tmp_path / "report.html"
    calm = report_for_versions(file_store, "r", same.version, ref.version, ReportConfig(), html_path=str(html))
    assert calm["drift"]["dataset_drift"] is False
    assert calm["drift"]["rows_compared"] == {"current": 800, "reference": 800}  # only the added rows
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<iframe" in page and "Dataset drift: no" in page

    drifted = report_for_versions(file_store, "r", shifted.version, same.version, ReportConfig())
    cols = drifted["drift"]["columns"]
    assert drifted["drift"]["dataset_drift"] is True
    assert {"chars", "words", "upper_share", "digit_share", "url_count", "label"} <= {c for c, x in cols.items()
                                                                                       if x["drifted"]}
    assert "source" not in cols

    alone = report_for_versions(file_store, "r", ref.version, None, ReportConfig())
    assert alone["drift"] is None and alone["statistics"]["rows"] == 800
    assert set(alone["statistics"]["label"]) == {"ham", "spam"}
    assert isinstance(pa.scalar(alone["statistics"]["chars"]["p50"]).as_py(), float)
