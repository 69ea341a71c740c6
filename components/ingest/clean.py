"""Validate raw rows and split them into accepted rows and quarantined rows (with reasons).

Checks run column-wise on Arrow batches; only hashing (doc_id) and the rare per-row error details
run in Python. Reason codes, in the order they are checked:

  reader-level: unreadable_file, empty_file, broken_mime, schema_mismatch, truncated_record,
                bad_type, undecodable (also found here)
  here:         undecodable, binary_content, empty_text, too_short, too_long, missing_label,
                unknown_label, duplicate, duplicate_of_parent
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.dataset.schema import (
    ACCEPTED_SCHEMA,
    QUARANTINE_SCHEMA,
    ContentDigest,
    content_digests,
    content_keys,
    doc_ids_from_digests,
    keys_from_digests,
)
from components.ingest.config import CleaningConfig


class KeyIndex:
    """A growing set of 64-bit keys with vectorized membership tests, in bounded memory.

    Sorted runs merged like a log-structured tree (runs of similar size are merged), so inserts
    are amortized O(log n) and lookups are a `searchsorted` per run: 8 bytes per key, where a
    Python set would need ~60.
    """

    def __init__(self, keys: np.ndarray | None = None):
        self.runs: list[np.ndarray] = []
        if keys is not None and len(keys):
            self.runs.append(np.unique(keys))

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = 0
            found |= run[pos] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        self.add_sorted(np.sort(keys))

    def add_sorted(self, run: np.ndarray) -> None:
        if not len(run):
            return
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = np.concatenate([self.runs.pop(), run])
            run.sort(kind="stable")
        self.runs.append(run)

    def all_keys(self) -> np.ndarray:
        return np.sort(np.concatenate(self.runs)) if self.runs else np.empty(0, dtype=np.uint64)


@dataclass
class CleanStats:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)


class Cleaner:
    """Stateful across batches: remembers every accepted key for duplicate detection."""

    def __init__(self, config: CleaningConfig, parent_keys: np.ndarray | None = None, select=None):
        """select: optional (text, source) -> (keep mask, describe(i)) applied before hashing; rows it
        drops are quarantined as `not_selected` (e.g. a collection defined by topic)."""
        self.config = config
        self.select = select
        self.parent = KeyIndex(parent_keys if config.dedup_against_parent else None)
        self.seen = KeyIndex()
        self.stats = CleanStats()
        self._labels = pa.array(config.labels, pa.string()) if config.labels else None
        # Order-independent digest of the accepted (doc, label) rows, kept as 32 bytes of state.
        self.digest = ContentDigest()

    def clean(self, raw: pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
        n = raw.num_rows
        self.stats.rows_read += n
        cfg = self.config
        reason = raw.column("error")
        detail = raw.column("error_detail")
        raw_bytes = raw.column("text")

        text, bad_utf8 = _decode_utf8(raw_bytes, reason)
        reason, detail = _flag(reason, detail, bad_utf8, "undecodable", lambda i: _utf8_error(raw_bytes[i].as_py()))
        if _has_byte(text, 0):  # one memchr over the batch; the per-row search only when needed
            nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
            reason, detail = _flag(reason, detail, nul, "binary_content",
                                   lambda i: f"NUL character at position {text[i].as_py().index(chr(0))}")
        if cfg.unicode_normalization != "none" and not _all_ascii(text):  # NFC/NFKC leave ASCII as is
            text = pc.utf8_normalize(text, form=cfg.unicode_normalization)
        if cfg.strip_whitespace:
            text = pc.utf8_trim_whitespace(text)
        length = pc.fill_null(pc.utf8_length(text), 0)
        reason, detail = _flag(reason, detail, pc.equal(length, 0), "empty_text",
                               lambda i: "no text left after stripping whitespace")
        reason, detail = _flag(reason, detail, pc.less(length, cfg.min_chars), "too_short",
                               lambda i: f"{length[i].as_py()} chars, minimum {cfg.min_chars}")
        reason, detail = _flag(reason, detail, pc.greater(length, cfg.max_chars), "too_long",
                               lambda i: f"{length[i].as_py()} chars, maximum {cfg.max_chars}")

        label = raw.column("label")
        missing = pc.fill_null(pc.or_kleene(pc.is_null(label), pc.equal(pc.utf8_trim_whitespace(label), "")), True)
        reason, detail = _flag(reason, detail, missing, "missing_label", lambda i: "no label")
        if self._labels is not None:
            unknown = pc.invert(pc.is_in(label, value_set=self._labels))
            reason, detail = _flag(reason, detail, unknown, "unknown_label",
                                   lambda i: f"label {label[i].as_py()!r} not in {cfg.labels}")

        if self.select is not None:
            keep_rows, describe = self.select(text, raw.column("source"))
            reason, detail = _flag(reason, detail, pc.invert(keep_rows), "not_selected", describe)

        # Hash only rows that survived so far (cheap checks first, Python loop last).
        ok = pc.is_null(reason)
        ok_idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
        digests = content_digests(text.take(ok_idx)) if len(ok_idx) else np.empty((0, 16), np.uint8)
        keys = keys_from_digests(digests)
        dup_reason = np.full(len(ok_idx), None, dtype=object)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if len(keys):
            in_parent = self.parent.contains(sorted_keys)
            in_seen = self.seen.contains(sorted_keys)
            # Stable order: the first occurrence within this batch keeps the row, later ones repeat.
            repeat = np.zeros(len(keys), dtype=bool)
            repeat[1:] = sorted_keys[1:] == sorted_keys[:-1]
            dups = np.empty(len(keys), dtype=object)
            dups[:] = None
            dups[in_seen | repeat] = "duplicate"
            dups[in_parent] = "duplicate_of_parent"
            dup_reason[order] = dups
        if len(ok_idx):
            full = np.full(n, None, dtype=object)
            full[ok_idx] = dup_reason
            dup_arr = pa.array(full, pa.string())
            reason = pc.coalesce(reason, dup_arr)
            doc_ids = doc_ids_from_digests(digests)
            detail = _fill_details(detail, pc.is_valid(dup_arr),
                                   lambda i: f"doc_id {doc_ids[int(np.searchsorted(ok_idx, i))]}")

        keep = np.asarray(dup_reason == None, dtype=bool)  # noqa: E711 (object array)
        accepted_idx = ok_idx[keep]
        accepted_keys = keys[keep]
        self.seen.add_sorted(sorted_keys[keep[order]])

        accepted = pa.table({
            "doc_id": doc_ids_from_digests(digests[keep]),
            "text": text.take(accepted_idx).cast(pa.large_string()),
            "label": label.take(accepted_idx),
            "source": raw.column("source").take(accepted_idx),
            "source_uri": raw.column("source_uri").take(accepted_idx),
            "source_row": raw.column("source_row").take(accepted_idx),
        }, schema=ACCEPTED_SCHEMA)
        rejected_mask = pc.is_valid(reason)
        quarantined = pa.table({
            "reason": reason.filter(rejected_mask),
            "detail": detail.filter(rejected_mask),
            "raw": raw_bytes.filter(rejected_mask),
            "label": label.filter(rejected_mask),
            "source": raw.column("source").filter(rejected_mask),
            "source_uri": raw.column("source_uri").filter(rejected_mask),
            "source_row": raw.column("source_row").filter(rejected_mask),
        }, schema=QUARANTINE_SCHEMA)

        self._count(accepted, quarantined)
        self.digest.add(content_keys(accepted_keys, accepted.column("label").combine_chunks()))
        if self.stats.rows_read != self.stats.rows_accepted + self.stats.rows_quarantined:
            raise AssertionError(f"row accounting broke: read {self.stats.rows_read} != accepted "
                                 f"{self.stats.rows_accepted} + quarantined {self.stats.rows_quarantined}")
        return accepted, quarantined

    def _count(self, accepted: pa.Table, quarantined: pa.Table) -> None:
        s = self.stats
        s.rows_accepted += accepted.num_rows
        s.rows_quarantined += quarantined.num_rows
        for table, counter, col in ((quarantined, s.by_reason, "reason"), (accepted, s.by_label, "label")):
            if table.num_rows:
                for item in pc.value_counts(table.column(col)).to_pylist():
                    counter[item["values"]] = counter.get(item["values"], 0) + item["counts"]


def _decode_utf8(raw: pa.Array, reason: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Text as a string array, plus a mask of rows whose bytes are not UTF-8 (their text -> null)."""
    raw = raw.cast(pa.large_binary())
    try:
        return raw.cast(pa.large_string()), pa.array([False] * len(raw))
    except pa.ArrowInvalid:
        pass  # rare: find the bad rows one by one
    values, bad = [], []
    for v in raw.to_pylist():
        if v is None:
            values.append(None)
            bad.append(False)
            continue
        try:
            values.append(v.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            values.append(None)
            bad.append(True)
    bad_arr = pc.and_(pa.array(bad), pc.is_null(reason))
    return pa.array(values, pa.large_string()), bad_arr


def _utf8_error(value: bytes | None) -> str:
    if value is None:
        return "no bytes"
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start} ({value[exc.start:exc.start + 4]!r})"
    return "invalid UTF-8"


def _data_bytes(text: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of all values (a zero-copy view of the Arrow data buffer)."""
    if text.type != pa.large_string():
        text = text.cast(pa.large_string())
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
    data = text.buffers()[2]
    if data is None or not len(offsets):
        return np.empty(0, np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]


def _has_byte(text: pa.Array, value: int) -> bool:
    data = _data_bytes(text)
    return bool(len(data)) and bytes(data).find(bytes([value])) >= 0


def _all_ascii(text: pa.Array) -> bool:
    data = _data_bytes(text)
    return not len(data) or int(data.max()) < 128


def _flag(reason: pa.Array, detail: pa.Array, mask: pa.Array, code: str, describe) -> tuple[pa.Array, pa.Array]:
    """Set `code` (and a per-row detail) where `mask` holds and no earlier reason was found."""
    fresh = pc.and_(pc.fill_null(mask, False), pc.is_null(reason))
    if not pc.any(fresh).as_py():  # the common case: nothing new to flag
        return reason, detail
    return (pc.if_else(fresh, pa.scalar(code, pa.string()), reason),
            _fill_details(detail, fresh, describe))


def _fill_details(detail: pa.Array, mask: pa.Array, describe) -> pa.Array:
    """Per-row detail text for the (few) rows in `mask` that have none yet."""
    mask = pc.and_(pc.fill_null(mask, False), pc.is_null(detail))
    idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    if not len(idx):
        return detail
    values = detail.to_pylist()
    for i in idx:
        values[i] = describe(int(i))
    return pa.array(values, pa.string())
