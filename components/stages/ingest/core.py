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
from typing import NamedTuple

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
    keys_from_doc_ids,
)
from components.stages.ingest.config import CleaningConfig
from components.stages.ingest.dedup import ParentKeys, WindowIndex, stable_key_order

# What the parts do not hold about an accepted row, by accepted row number: its raw bytes where they
# differ from its cleaned text (null where they do not) and its email notes.
RAW_CHANGES_SCHEMA = pa.schema([("seq", pa.int64()), ("raw", pa.large_binary()), ("text_from", pa.string()),
                                ("defects", pa.string())])


class Cleaned(NamedTuple):
    accepted: pa.Table
    quarantined: pa.Table
    # Accepted rows with raw bytes other than their cleaned text, or email notes: what the
    # quarantine keeps (and the counts give back) if dedup's phase 2 finds the row a duplicate.
    raw_changes: pa.Table
    # Row positions in the raw batch of the accepted and the quarantined rows (source order).
    accepted_rows: np.ndarray
    quarantined_rows: np.ndarray


@dataclass
class CleanStats:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)
    # Accepted emails: which parts their text came from, and parser defects by name.
    text_from: dict[str, int] = field(default_factory=dict)
    accepted_defects: dict[str, int] = field(default_factory=dict)


class Cleaner:
    """Stateful across batches: remembers accepted keys (in `seen`) for duplicate detection."""

    def __init__(self, config: CleaningConfig, parent: ParentKeys | np.ndarray | None = None, select=None,
                 seen: WindowIndex | None = None, dedup: bool = True):
        """parent: the parent version's keys (ParentKeys, or an array held in RAM).
        seen: where accepted keys go; by default all in RAM (exact on its own). A WindowIndex with a
        budget keeps RAM flat, and then `dedup.resolve` finishes the job after the last batch.
        select: optional (text, source) -> (keep mask, describe(i)) applied before hashing; rows it
        drops are quarantined as `not_selected` (e.g. a collection defined by topic).
        dedup=False: no duplicate checks at all (an engine that dedups globally, like Spark)."""
        self.dedup = dedup
        self.config = config
        self.select = select
        if not config.dedup_against_parent or parent is None or isinstance(parent, np.ndarray):
            keys = parent if config.dedup_against_parent and isinstance(parent, np.ndarray) else None
            parent = ParentKeys("", [] if keys is None else [keys], 0 if keys is None else len(keys), 2**62)
        self.parent = parent
        self.seen = seen if seen is not None else WindowIndex("", budget=2**62)
        self.stats = CleanStats()
        # Order-independent digest of the accepted (doc, label) rows, kept as 32 bytes of state.
        self.digest = ContentDigest()

    def clean(self, raw: pa.RecordBatch) -> Cleaned:
        return self.admit(raw, prepare(raw, self.config, self.select))

    def withdraw(self, rows: pa.Table, text_from: list[str], defects: list[str]) -> None:
        """Rows admitted earlier that the dedup across windows (`dedup.resolve`, after the last batch)
        found to be duplicates: out of the accepted counts, the labels, the defects and text sources
        counted for them, and the content digest; counted as quarantined instead. `text_from` and
        `defects` are what was counted for these rows when they were admitted."""
        labels = rows.column("label").combine_chunks()
        self.digest.remove(content_keys(keys_from_doc_ids(rows.column("doc_id").combine_chunks()), labels))
        stats = self.stats
        _subtract(stats.by_label, labels.drop_null().to_pylist())  # as add_counts counted them
        _subtract(stats.text_from, text_from)
        _subtract(stats.accepted_defects, defects)
        stats.rows_accepted -= rows.num_rows
        stats.rows_quarantined += rows.num_rows

    def recount_reasons(self, by_reason: dict[str, int]) -> None:
        """The quarantine's reasons as its final file holds them (after `withdraw` and relabelling)."""
        self.stats.by_reason = dict(by_reason)

    def admit(self, raw: pa.RecordBatch, prepared: Prepared) -> Cleaned:
        """The stateful, ordered half of cleaning: duplicates against the parent and the rows
        admitted so far, the counts and the content digest. `prepared` is `prepare(raw, ...)`, from
        this process or a worker (`data.workers`): either way the same rows come out."""
        n = raw.num_rows
        accepted_before, quarantined_before = self.stats.rows_accepted, self.stats.rows_quarantined
        self.stats.rows_read += n
        reason, detail, ok_idx = prepared.reason, prepared.detail, prepared.ok_idx
        text = prepared.text if prepared.text is not None else _decode_utf8(raw.column("text"), reason)[0]
        raw_bytes, text_from = raw.column("text"), raw.column("text_from")
        keys, order = prepared.keys, prepared.order
        sorted_keys = keys[order]
        dup_reason = self._duplicate_reasons(keys, order, sorted_keys)
        keep = np.asarray(dup_reason == None, dtype=bool)  # noqa: E711 (object array)
        all_kept = bool(keep.all())  # most batches have no duplicate: nothing to add or filter
        if not all_kept:
            full = np.full(n, None, dtype=object)
            full[ok_idx] = dup_reason
            dup_arr = pa.array(full, pa.string())
            reason = pc.coalesce(reason, dup_arr)
            doc_ids = prepared.doc_ids
            detail = _fill_details(detail, pc.is_valid(dup_arr),
                                   lambda i: f"doc_id {doc_ids[int(np.searchsorted(ok_idx, i))]}")

        accepted_idx = ok_idx[keep]
        accepted_keys = keys[keep]
        if self.dedup:
            self.seen.add(accepted_keys, sorted_keys[keep[order]])

        doc_ids = prepared.doc_ids if all_kept else prepared.doc_ids.filter(pa.array(keep))
        accepted_text = _rows(text, accepted_idx).cast(pa.large_string())
        accepted = _accepted_table(raw, doc_ids, accepted_text, accepted_idx)
        rejected_mask = pc.is_valid(reason)
        quarantined = _quarantined_table(raw, reason, detail, rejected_mask)

        rejected_rows = np.flatnonzero(rejected_mask.to_numpy(zero_copy_only=False))
        if self.parent.spilled and len(keys):
            # In-window repeats say `duplicate`; phase 2 relabels those whose key the parent has.
            repeat_pos = np.flatnonzero(dup_reason == "duplicate")
            self.seen.note_repeats(keys[repeat_pos],
                                   quarantined_before + np.searchsorted(rejected_rows, ok_idx[repeat_pos]))
        accepted_from, accepted_defects = _rows(text_from, accepted_idx), _rows(raw.column("defects"), accepted_idx)
        raw_changes = _raw_changes(_rows(raw_bytes, accepted_idx), accepted_text, accepted_from, accepted_defects,
                                   accepted_before, prepared.text_unchanged)

        self._count(accepted, quarantined)
        self._count_email_notes(accepted_from, accepted_defects)
        self.digest.add(content_keys(accepted_keys, accepted.column("label").combine_chunks()))
        if self.stats.rows_read != self.stats.rows_accepted + self.stats.rows_quarantined:
            raise AssertionError(f"row accounting broke: read {self.stats.rows_read} != accepted "
                                 f"{self.stats.rows_accepted} + quarantined {self.stats.rows_quarantined}")
        return Cleaned(accepted, quarantined, raw_changes, accepted_idx, rejected_rows)

    def _duplicate_reasons(self, keys: np.ndarray, order: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
        """Per hashed row (in `keys` order): `duplicate_of_parent` when the parent has its key,
        `duplicate` when a row admitted before or an earlier row of this batch has it, else None."""
        dup_reason = np.full(len(keys), None, dtype=object)
        if not len(keys) or not self.dedup:
            return dup_reason
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
        return dup_reason

    def _count_email_notes(self, text_from: pa.Array, defects: pa.Array) -> None:
        add_counts(self.stats.text_from, text_from)
        if defects.null_count < len(defects):
            add_counts(self.stats.accepted_defects, pc.list_flatten(pc.split_pattern(defects.drop_null(), ",")))

    def _count(self, accepted: pa.Table, quarantined: pa.Table) -> None:
        s = self.stats
        s.rows_accepted += accepted.num_rows
        s.rows_quarantined += quarantined.num_rows
        add_counts(s.by_reason, quarantined.column("reason").combine_chunks())
        add_counts(s.by_label, accepted.column("label").combine_chunks())


def _accepted_table(raw: pa.RecordBatch, doc_ids: pa.Array, text: pa.Array, rows: np.ndarray) -> pa.Table:
    """The accepted rows: `text` is theirs already (cleaned), the other columns are taken at `rows`."""
    return pa.table({
        "doc_id": doc_ids,
        "text": text,
        "label": _rows(raw.column("label"), rows),
        "source": _rows(raw.column("source"), rows),
        "source_uri": _rows(raw.column("source_uri"), rows),
        "source_row": _rows(raw.column("source_row"), rows),
    }, schema=ACCEPTED_SCHEMA)


def _quarantined_table(raw: pa.RecordBatch, reason: pa.Array, detail: pa.Array, rejected: pa.Array) -> pa.Table:
    """The rejected rows with their reason and detail, and their raw bytes as read."""
    return pa.table({
        "reason": reason.filter(rejected),
        "detail": detail.filter(rejected),
        "raw": raw.column("text").filter(rejected),
        "label": raw.column("label").filter(rejected),
        "source": raw.column("source").filter(rejected),
        "source_uri": raw.column("source_uri").filter(rejected),
        "source_row": raw.column("source_row").filter(rejected),
    }, schema=QUARANTINE_SCHEMA)


class Prepared(NamedTuple):
    """What `prepare` found in one raw batch: everything but the duplicate checks."""
    text: pa.Array | None  # decoded and normalized; None where it is the raw bytes as they are
    reason: pa.Array       # the first reason found per row (null: fine so far)
    detail: pa.Array
    ok_idx: np.ndarray     # rows with no reason, which were hashed
    keys: np.ndarray       # their dedup keys (the digests' first 64 bits), and the stable order
    order: np.ndarray      # that sorts them
    doc_ids: pa.Array      # their doc_ids (the digests' first 128 bits in hex)
    # Every row's text is its raw bytes as they are (decoded, nothing normalized or stripped): then
    # no accepted row has raw bytes to keep, and admit need not compare them.
    text_unchanged: bool = False


# The raw columns `prepare` reads (and `source` where a selector is given).
PREPARE_READS = ("text", "label", "error", "error_detail", "text_from")


def prepare(raw: pa.RecordBatch, config: CleaningConfig, select=None, drop_unchanged_text: bool = False) -> Prepared:
    """The pure, per-batch half of cleaning: decode, normalize, validate and hash. It depends on
    the batch alone, so `data.workers` processes run it on batches in parallel."""
    cfg = config
    reason = raw.column("error")
    detail = raw.column("error_detail")
    raw_bytes = raw.column("text")

    decoded, bad_utf8 = _decode_utf8(raw_bytes, reason)
    text = decoded
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
    text_from = raw.column("text_from")

    def origin(i: int) -> str:  # emails say which parts the text came from, e.g. "subject only"
        part = text_from[i].as_py()
        return f" (text from {part})" if part else ""

    reason, detail = _flag(reason, detail, pc.equal(length, 0), "empty_text",
                           lambda i: f"no text left after stripping whitespace{origin(i)}")
    reason, detail = _flag(reason, detail, pc.less(length, cfg.min_chars), "too_short",
                           lambda i: f"{length[i].as_py()} chars, minimum {cfg.min_chars}{origin(i)}")
    reason, detail = _flag(reason, detail, pc.greater(length, cfg.max_chars), "too_long",
                           lambda i: f"{length[i].as_py()} chars, maximum {cfg.max_chars}")

    label = raw.column("label")
    missing = pc.fill_null(pc.or_kleene(pc.is_null(label), pc.equal(pc.utf8_trim_whitespace(label), "")), True)
    reason, detail = _flag(reason, detail, missing, "missing_label", lambda i: "no label")
    if cfg.labels:
        unknown = pc.invert(pc.is_in(label, value_set=pa.array(cfg.labels, pa.string())))
        reason, detail = _flag(reason, detail, unknown, "unknown_label",
                               lambda i: f"label {label[i].as_py()!r} not in {cfg.labels}")

    if select is not None:
        keep_rows, describe = select(text, raw.column("source"))
        reason, detail = _flag(reason, detail, pc.invert(keep_rows), "not_selected", describe)

    # Hash only rows that survived so far (cheap checks first, Python loop last).
    ok = pc.is_null(reason)
    ok_idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    digests = content_digests(_rows(text, ok_idx)) if len(ok_idx) else np.empty((0, 16), np.uint8)
    unchanged = not pc.any(bad_utf8).as_py() and text.equals(decoded)
    keys = keys_from_digests(digests)
    # A worker sends back less where cleaning left every row's text as decoded (admit decodes again).
    return Prepared(None if unchanged and drop_unchanged_text else text, reason, detail, ok_idx, keys,
                    stable_key_order(keys), doc_ids_from_digests(digests), unchanged)


def _rows(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """values.take(idx), without the copy where idx is every row in order (the common batch)."""
    return values if len(idx) == len(values) else values.take(idx)


def add_counts(counter: dict[str, int], values: pa.Array) -> None:
    """Add how often each non-null value occurs in `values` to `counter`."""
    if values.null_count == len(values):
        return
    for item in pc.value_counts(values.drop_null()).to_pylist():
        counter[item["values"]] = counter.get(item["values"], 0) + item["counts"]


def _raw_changes(raw: pa.Array, text: pa.Array, text_from: pa.Array, defects: pa.Array, first_seq: int,
                 text_unchanged: bool = False) -> pa.Table:
    if text_unchanged:  # prepare found every text equal to its raw bytes: nothing to compare
        differs = pa.array(np.zeros(len(raw), dtype=bool))
    else:
        differs = pc.invert(pc.fill_null(pc.equal(raw.cast(pa.large_binary()), text.cast(pa.large_binary())),
                                         False))
    noted = pc.or_(pc.is_valid(text_from), pc.is_valid(defects))
    rows = np.flatnonzero(pc.or_(differs, noted).to_numpy(zero_copy_only=False))
    if not len(rows):
        return RAW_CHANGES_SCHEMA.empty_table()
    changed = differs.take(rows)
    return pa.table({"seq": pa.array(first_seq + rows, pa.int64()),
                     "raw": pc.if_else(changed, raw.take(rows).cast(pa.large_binary()),
                                       pa.scalar(None, pa.large_binary())),
                     "text_from": text_from.take(rows), "defects": defects.take(rows)}, schema=RAW_CHANGES_SCHEMA)


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


def _subtract(counter: dict[str, int], values: list[str]) -> None:
    """Take one count off each value (a value counted to zero leaves the counter)."""
    for value in values:
        counter[value] -= 1
        if not counter[value]:
            del counter[value]
