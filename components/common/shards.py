"""Parquet files written in fixed-size row groups, read a batch or a row range at a time.

The split and featurize steps stream their inputs through these, so their memory is bounded by one
batch per open file whatever the dataset's size; fixed row groups make a file's bytes a function
of its rows alone and let a training rank read only the row groups that hold its shard.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 16_384


class FixedRowGroupWriter:
    """Buffers whatever it is given and writes row groups of exactly `rows_per_group` rows (the last
    one shorter), so the same rows give the same file however they arrived in batches."""

    def __init__(self, path: str, schema: pa.Schema, rows_per_group: int = ROW_GROUP_ROWS):
        self.path = path
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self.rows_per_group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending_rows:
            return
        buffered = pa.concat_tables(self._pending)
        full = (buffered.num_rows // self.rows_per_group) * self.rows_per_group
        stop = buffered.num_rows if final else full
        for start in range(0, stop, self.rows_per_group):
            group = buffered.slice(start, min(self.rows_per_group, stop - start))
            self._writer.write_table(group, row_group_size=self.rows_per_group)
        rest = buffered.slice(stop)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> int:
        """Writes what is buffered and closes the file (an empty file still has the schema)."""
        self._flush(final=True)
        self._writer.close()
        return self.rows

    def __enter__(self) -> FixedRowGroupWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self._writer.is_open:
            self._writer.close()


def iter_batches(path: str, columns: list[str] | None = None,
                 batch_rows: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)


def shard_range(rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous share of `rows`: sizes differ by at most one row across ranks."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    base, extra = divmod(rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def read_rows(path: str, start: int, stop: int, columns: list[str] | None = None) -> pa.Table:
    """Rows [start, stop) of a Parquet file, reading only the row groups that hold them."""
    handle = pq.ParquetFile(path)
    groups, first_row, offset = [], None, 0
    for i in range(handle.metadata.num_row_groups):
        n = handle.metadata.row_group(i).num_rows
        if offset + n > start and offset < stop:
            groups.append(i)
            first_row = offset if first_row is None else first_row
        offset += n
    if not groups:
        return handle.schema_arrow.empty_table() if columns is None else \
            handle.schema_arrow.empty_table().select(columns)
    table = handle.read_row_groups(groups, columns=columns)
    return table.slice(start - first_row, stop - start)
