"""Readers: format sniffing, and Parquet sources read whole with their row numbers."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from components.dataset import versioning as v
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from components.stages.ingest.readers import sniff_format


@pytest.mark.parametrize("name, head, fmt", [
    ("a.csv", b"text,label\n", "csv"), ("a.csv.gz", b"\x1f\x8b", "csv"), ("a.jsonl", b"{}", "jsonl"),
    ("x", b'{"text": 1}', "jsonl"), ("a.parquet", b"PAR1", "parquet"), ("m.txt", b"From x\nSubject: y\n", "email"),
    ("m.txt", b"Received: a\nSubject: b\n\nbody", "email"), ("n.txt", b"just some words", "text"),
    ("img.png", b"\x89PNG\x00\x00", "unknown"),
])
def test_sniff_format(name, head, fmt):
    assert sniff_format(name, head) == fmt


def test_a_parquet_file_of_many_row_groups_is_read_whole_with_its_row_numbers(tmp_path, file_store):
    """Read one row group at a time (bounded memory): every row, in order, numbered from 1."""
    import pyarrow as pa

    texts = [f"document number {i} with enough words" for i in range(1000)]
    pq.write_table(pa.table({"text": texts, "label": ["ham", "spam"] * 500}), tmp_path / "many.parquet",
                   row_group_size=128)
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 8
    result = ingest([str(tmp_path / "many.parquet")], "rg", file_store, SourceSettings(), CleaningConfig(),
                    batch_rows=100)
    assert (result.rows_read, result.rows_accepted) == (1000, 1000)
    table = v.read_table(file_store, v.resolve(file_store, "rg"))
    by_row = dict(zip(table.column("source_row").to_pylist(), table.column("text").to_pylist(), strict=True))
    assert by_row == {i + 1: text for i, text in enumerate(texts)}
