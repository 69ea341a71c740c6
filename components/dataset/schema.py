"""Row schemas of dataset versions and the doc_id <-> dedup key encodings."""

from __future__ import annotations

import hashlib
import operator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ACCEPTED_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("text", pa.large_string()),
    ("label", pa.string()),
    ("source", pa.string()),
    ("source_uri", pa.string()),
    ("source_row", pa.int64()),
])

QUARANTINE_SCHEMA = pa.schema([
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("raw", pa.large_binary()),
    ("label", pa.string()),
    ("source", pa.string()),
    ("source_uri", pa.string()),
    ("source_row", pa.int64()),
])

def without_raw(table: pa.Table) -> pa.Table:
    """A quarantine table whose raw bytes are withheld (cleaning.quarantine_raw: false)."""
    index = table.schema.get_field_index("raw")
    return table.set_column(index, table.schema.field(index), pa.nulls(table.num_rows, table.schema.field(index).type))


DOC_ID_HEX = 32  # 128 bits of SHA-256: the stable content id of a text
_DIGEST = operator.methodcaller("digest")
# Each byte value's two hex digits as one little-endian uint16: one lookup per byte.
_HEX_PAIRS = np.array([int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype="<u2")


def content_digests(texts: pa.Array) -> np.ndarray:
    """SHA-256 prefixes (n, 16) uint8 of each UTF-8 text.

    Only C-level callables inside `map` (no lambda, no per-row slicing): the per-row cost is the
    hash itself plus two calls, which is what sets ingest throughput.
    """
    values = texts.cast(pa.large_binary()).to_pylist()
    joined = b"".join(map(_DIGEST, map(hashlib.sha256, values)))
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(values), 32)[:, :16]


def doc_ids_from_digests(digests: np.ndarray) -> pa.Array:
    """Lower-case hex strings, built without a Python loop."""
    n = len(digests)
    hexed = _HEX_PAIRS[digests]  # (n, 16) pairs of digits = (n, 32) characters, contiguous
    offsets = np.arange(0, (n + 1) * DOC_ID_HEX, DOC_ID_HEX, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed))


def keys_from_digests(digests: np.ndarray) -> np.ndarray:
    """First 64 bits of each digest as integers: the dedup key (equal to int(doc_id[:16], 16))."""
    return np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)


def keys_from_doc_ids(doc_ids: pa.Array) -> np.ndarray:
    """Inverse of the above for stored doc_id columns (vectorized hex decode)."""
    n = len(doc_ids)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    arr = doc_ids.cast(pa.string())
    if arr.offset or arr.null_count:
        arr = pa.concat_arrays([arr])
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=n * DOC_ID_HEX).reshape(n, DOC_ID_HEX)
    nibbles = np.where(data >= ord("a"), data - ord("a") + 10, data - ord("0")).astype(np.uint64)
    keys = np.zeros(n, dtype=np.uint64)
    for i in range(16):
        keys = (keys << np.uint64(4)) | nibbles[:, i]
    return keys




def label_mix(labels: pa.Array) -> np.ndarray:
    """A 64-bit hash of each row's label (hashed once per distinct label), for content digests."""

    encoded = pc.dictionary_encode(labels.cast(pa.string()))
    per_label = np.array([int.from_bytes(hashlib.sha256(str(x).encode()).digest()[:8], "big")
                          for x in encoded.dictionary.to_pylist()], dtype=np.uint64)
    if not len(per_label):
        return np.zeros(len(labels), dtype=np.uint64)
    return per_label[encoded.indices.to_numpy(zero_copy_only=False)]


def content_keys(keys: np.ndarray, labels: pa.Array) -> np.ndarray:
    """One uint64 per (document, label): keys are unique within a version, so the multiset of
    these values identifies the version's content whatever the row order."""
    return keys ^ label_mix(labels)


_LANES = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
                  dtype=np.uint64)


def _mix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class ContentDigest:
    """Order-independent digest of a multiset of content keys, built incrementally per batch.

    Four independently mixed 64-bit lanes are summed modulo 2**64 (a multiset hash: adding rows in
    any order or batching gives the same state), so no per-row array is kept and nothing is sorted.
    It detects any accidental change; it is not meant to resist deliberately crafted collisions
    (part files carry SHA-256 for integrity).
    """

    def __init__(self, lanes: list[int] | None = None, count: int = 0):
        self.lanes = np.array(lanes or [0, 0, 0, 0], dtype=np.uint64)
        self.count = count

    def add(self, content: np.ndarray) -> None:
        if not len(content):
            return
        with np.errstate(over="ignore"):
            for i, salt in enumerate(_LANES):
                self.lanes[i] += _mix64(content + salt).sum(dtype=np.uint64)
        self.count += len(content)

    def remove(self, content: np.ndarray) -> None:
        """Take rows out again (the sum is a group, so this undoes `add` exactly)."""
        if not len(content):
            return
        with np.errstate(over="ignore"):
            for i, salt in enumerate(_LANES):
                self.lanes[i] -= _mix64(content + salt).sum(dtype=np.uint64)
        self.count -= len(content)

    def merge(self, other: ContentDigest) -> None:
        with np.errstate(over="ignore"):
            self.lanes += other.lanes
        self.count += other.count

    def state(self) -> dict:
        return {"lanes": [int(x) for x in self.lanes], "count": self.count}

    def hexdigest(self) -> str:
        return hashlib.sha256(b"conveyor-content-v2" + self.lanes.tobytes() +
                              self.count.to_bytes(8, "little")).hexdigest()
