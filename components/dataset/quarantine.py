"""Reading a version's quarantine back: which rows were refused, where they came from and why.

A duplicate's detail names the doc_id it repeats; the row that was kept under that doc_id is looked
up in the version's parts (its own and its parent's, which a snapshot lists too), so a user sees
the file and row of both.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.errors import IntegrityError
from components.common.hashing import sha256_of_file
from components.common.layout import dataset_prefix
from components.common.storage import Store
from components.dataset.versioning import VersionRef, read_batches

DUPLICATE_REASONS = ("duplicate", "duplicate_of_parent")
DOC_ID_PREFIX = "doc_id "


def quarantine_table(store: Store, ref: VersionRef) -> pa.Table | None:
    """The version's quarantined rows (checksum verified), None when it quarantined none."""
    entry = ref.manifest.get("quarantine")
    if not entry:
        return None
    key = f"{dataset_prefix(ref.dataset)}/{entry['path']}"
    with tempfile.TemporaryDirectory() as tmp:
        local = store.local_copy(key, tmp)
        if sha256_of_file(local) != entry["sha256"]:
            raise IntegrityError(f"{store.url(key)}: sha256 does not match the manifest's; the quarantine "
                                 "file was modified")
        return pq.read_table(local)


def quarantined_rows(store: Store, ref: VersionRef, reason: str | None = None,
                     with_raw: bool = False) -> list[dict[str, Any]]:
    """Each quarantined row: source file and row (1-based; 0 for a whole file), reason, detail,
    and for a duplicate the accepted row it repeats. The raw content only when asked for (it is
    the data itself, personal data in production)."""
    table = quarantine_table(store, ref)
    if table is None:
        return []
    if reason is not None:
        table = table.filter(pc.equal(table.column("reason"), reason))
    rows = table.select(["source_uri", "source_row", "reason", "detail", "label", "source"]
                        + (["raw"] if with_raw else [])).to_pylist()
    wanted = {r["detail"][len(DOC_ID_PREFIX):] for r in rows
              if r["reason"] in DUPLICATE_REASONS and (r["detail"] or "").startswith(DOC_ID_PREFIX)}
    kept = _accepted_rows(store, ref, wanted) if wanted else {}
    for r in rows:
        if r["reason"] in DUPLICATE_REASONS:
            doc_id = (r["detail"] or "")[len(DOC_ID_PREFIX):]
            r["duplicate_of"] = kept.get(doc_id, {"doc_id": doc_id})
        if with_raw:
            r["raw"] = None if r["raw"] is None else r["raw"].decode("utf-8", errors="replace")
    return rows


def _accepted_rows(store: Store, ref: VersionRef, doc_ids: set[str]) -> dict[str, dict[str, Any]]:
    """doc_id -> where the accepted row with that id came from, one part at a time."""
    found: dict[str, dict[str, Any]] = {}
    value_set = pa.array(sorted(doc_ids), pa.string())
    for batch in read_batches(store, ref, columns=["doc_id", "source_uri", "source_row"]):
        hits = batch.filter(pc.is_in(batch.column("doc_id"), value_set=value_set))
        for row in hits.to_pylist():
            found.setdefault(row["doc_id"], row)
        if len(found) == len(doc_ids):
            break
    return found


def reasons(ref: VersionRef) -> dict[str, int]:
    return dict(ref.manifest["rows"].get("by_reason", {}))
