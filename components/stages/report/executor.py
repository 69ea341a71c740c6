"""Report executor: read a dataset version (and its reference) from the store and build the report."""

from __future__ import annotations

from typing import Any

from components.common.storage import Store
from components.dataset import versioning as v
from components.stages.report.config import ReportConfig
from components.stages.report.core import build_report


def report_for_versions(store: Store, name: str, version: str, reference: str | None,
                        config: ReportConfig, html_path: str | None = None) -> dict[str, Any]:
    ref = v.resolve(store, name, version)
    table = v.read_table(store, ref, columns=["text", "label", "source"])
    ref_table = ref_manifest = None
    current = table
    if reference:
        rref = v.resolve(store, name, reference)
        ref_table = v.read_table(store, rref, columns=["text", "label", "source"])
        ref_manifest = rref.manifest
        # A child version inherits its ancestors' parts: compare only the rows the reference lacks,
        # or the shared rows would dilute any drift toward zero.
        shared = {p.path for p in rref.parts}
        own = [p for p in ref.parts if p.path not in shared]
        if own and len(own) < len(ref.parts):
            subset = v.VersionRef(ref.dataset, ref.version, {**ref.manifest, "parts": [p.entry() for p in own]})
            current = v.read_table(store, subset, columns=["text", "label", "source"])
    verdict, page = build_report(table, ref.manifest, ref_table, ref_manifest, config, drift_rows=current)
    if html_path:
        with open(html_path, "w", encoding="utf-8") as handle:
            handle.write(page)
    return verdict
