"""What a dataset version means, independent of how its rows fell into parts and in which order
its quarantine holds them: the yardstick for "two ways of ingesting gave the same version"."""

from __future__ import annotations

import tempfile

import pyarrow.parquet as pq

from components.dataset import versioning as v


def quarantine_rows(store, result) -> list[dict]:
    if not result.quarantine_uri:
        return []
    key = result.quarantine_uri[len(store.uri) + 1:]
    with tempfile.TemporaryDirectory() as tmp:
        return pq.read_table(store.local_copy(key, tmp)).to_pylist()


def outcome(store, result) -> dict:
    ref = v.resolve(store, result.dataset, result.version)
    rows = ref.manifest["rows"]
    accepted = sorted(v.read_table(store, ref).to_pylist(), key=lambda r: r["doc_id"])
    quarantine = sorted((tuple(r.values()) for r in quarantine_rows(store, result)), key=repr)
    return {"version": result.version, "read": result.rows_read, "accepted": result.rows_accepted,
            "quarantined": result.rows_quarantined, "reasons": result.quarantine_reasons,
            "total": result.rows_total, "manifest_rows": rows, "formats": ref.manifest["formats"],
            "parent": ref.manifest["parent"], "rows": accepted, "quarantine": quarantine}
