"""The cleaning core on raw Arrow batches, without readers or a store: every row comes out accepted
or quarantined with its reason, `prepare` (the pure half, run in worker processes) and `admit` (the
ordered half) give what `clean` gives, and the counts and content digest follow the rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from components.stages.ingest.config import CleaningConfig
from components.stages.ingest.core import Cleaner, prepare
from components.stages.ingest.readers import RAW_SCHEMA

ROWS = [  # (raw text, label, reason the cleaner must give, or None when accepted)
    (b"  Caf\xc3\xa9 open late  ", "ham", None),
    (b"Cafe\xcc\x81 open late", "ham", "duplicate"),  # the same text once NFC-normalized and trimmed
    (b"\xff\xfe not utf-8", "spam", "undecodable"),
    (b"has a \x00 byte", "spam", "binary_content"),
    (b"   ", "ham", "empty_text"),
    (b"hey", "ham", "too_short"),
    (b"x" * 50, "ham", "too_long"),
    (b"no label here", None, "missing_label"),
    (b"an unknown label", "eggs", "unknown_label"),
    (b"win a free prize now", "spam", None),
]
CONFIG = CleaningConfig(min_chars=4, max_chars=40, labels=["ham", "spam"])


def _batch(rows) -> pa.RecordBatch:
    n = len(rows)
    return pa.RecordBatch.from_pydict({
        "text": [r[0] for r in rows], "label": [r[1] for r in rows], "source": ["t"] * n,
        "source_uri": ["file:///in.csv"] * n, "source_row": list(range(n)), "error": [None] * n,
        "error_detail": [None] * n, "text_from": [None] * n, "defects": [None] * n}, schema=RAW_SCHEMA)


def test_every_row_is_accepted_or_quarantined_with_its_reason():
    cleaner = Cleaner(CONFIG)
    out = cleaner.clean(_batch(ROWS))

    assert out.accepted.num_rows + out.quarantined.num_rows == len(ROWS)
    reasons = dict(zip(out.quarantined.column("source_row").to_pylist(),
                       out.quarantined.column("reason").to_pylist(), strict=True))
    assert reasons == {i: r[2] for i, r in enumerate(ROWS) if r[2]}
    assert all(out.quarantined.column("detail").to_pylist())  # each reason says what was found
    assert out.accepted.column("text").to_pylist() == ["Café open late", "win a free prize now"]
    assert sorted(np.concatenate([out.accepted_rows, out.quarantined_rows]).tolist()) == list(range(len(ROWS)))
    stats = cleaner.stats
    assert (stats.rows_read, stats.rows_accepted, stats.rows_quarantined) == (10, 2, 8)
    assert stats.by_label == {"ham": 1, "spam": 1}
    assert sum(stats.by_reason.values()) == 8 and stats.by_reason["duplicate"] == 1


def test_prepare_then_admit_is_clean_and_repeats_across_batches_are_duplicates():
    whole = Cleaner(CONFIG)
    first = whole.clean(_batch(ROWS))
    split = Cleaner(CONFIG)
    again = split.admit(_batch(ROWS), prepare(_batch(ROWS), CONFIG))
    assert again.accepted.equals(first.accepted) and again.quarantined.equals(first.quarantined)
    assert split.digest.hexdigest() == whole.digest.hexdigest()

    later = split.clean(_batch(ROWS[:1]))  # a row seen in an earlier batch
    assert later.accepted.num_rows == 0 and later.quarantined.column("reason").to_pylist() == ["duplicate"]
    assert split.digest.hexdigest() == whole.digest.hexdigest()  # the digest holds the accepted rows only


def test_rows_in_the_parent_are_duplicates_of_it_and_withdraw_undoes_an_admission():
    seed = Cleaner(CONFIG)
    seed.clean(_batch(ROWS[-1:]))
    parent_keys = prepare(_batch(ROWS[-1:]), CONFIG).keys
    child = Cleaner(CONFIG, parent=parent_keys)
    out = child.clean(_batch(ROWS))
    assert out.accepted.column("text").to_pylist() == ["Café open late"]
    assert "duplicate_of_parent" in out.quarantined.column("reason").to_pylist()

    empty = Cleaner(CONFIG).digest.hexdigest()
    child.withdraw(out.accepted, [], [])  # a plain-text row: no email notes were counted for it
    assert (child.stats.rows_accepted, child.stats.rows_quarantined, child.stats.by_label) == (0, 10, {})
    assert child.digest.hexdigest() == empty


def test_raw_bytes_are_kept_exactly_where_cleaning_changed_the_text():
    """A batch whose every text is its raw bytes skips the comparison (prepare says so); one
    changed row in a batch makes admit compare, and keep that row's raw bytes alone."""
    plain = [(b"win a free prize now", "spam", None), (b"meeting notes today", "ham", None)]
    assert prepare(_batch(plain), CONFIG).text_unchanged
    assert Cleaner(CONFIG).clean(_batch(plain)).raw_changes.num_rows == 0

    mixed = [*plain, (b"  padded text here ", "ham", None)]
    assert not prepare(_batch(mixed), CONFIG).text_unchanged
    changes = Cleaner(CONFIG).clean(_batch(mixed)).raw_changes
    assert changes.column("seq").to_pylist() == [2]
    assert changes.column("raw").to_pylist() == [b"  padded text here "]
