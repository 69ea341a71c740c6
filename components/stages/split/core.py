"""Deterministic train/validation/test split by doc_id hash.

A row's split depends only on its doc_id and the salt, so it never moves when the dataset grows:
a test document stays a test document in every later version.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from components.dataset.schema import keys_from_doc_ids
from components.stages.split.config import SplitConfig

SPLITS = ("train", "validation", "test")


def _mix(keys: np.ndarray, salt: str) -> np.ndarray:
    """splitmix64 of key ^ salt: uniform 64-bit values, vectorized."""
    salt_int = np.uint64(int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big"))
    with np.errstate(over="ignore"):
        z = keys ^ salt_int
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def assign(doc_ids: pa.Array, config: SplitConfig) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each doc_id."""
    u = (_mix(keys_from_doc_ids(doc_ids), config.salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    codes = np.zeros(len(u), dtype=np.int8)
    codes[u < config.validation + config.test] = 1
    codes[u < config.test] = 2
    return codes


def folds(doc_ids: pa.Array, k: int, salt: str) -> np.ndarray:
    """Cross-validation fold (0..k-1) of each doc_id: like the split, a pure function of the id and
    the salt, so the same version gives the same folds anywhere, and independent of the split
    (another salt)."""
    doc_ids = doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids
    u = (_mix(keys_from_doc_ids(doc_ids), f"{salt}/cv") >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.minimum((u * k).astype(np.int64), k - 1)


def split_table(table: pa.Table | pa.RecordBatch, config: SplitConfig) -> dict[str, pa.Table | pa.RecordBatch]:
    """The rows of each split (a batch at a time gives the same rows, in the same order, as the whole)."""
    doc_ids = table.column("doc_id")
    codes = assign(doc_ids.combine_chunks() if isinstance(doc_ids, pa.ChunkedArray) else doc_ids, config)
    return {name: table.filter(pa.array(codes == i)) for i, name in enumerate(SPLITS)}
