"""Split executor: stream a dataset version from the store into three Parquet files, one batch at a
time (memory bounded by a batch, not by the version's size)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from components.common.shards import ROW_GROUP_ROWS, FixedRowGroupWriter
from components.common.storage import Store, open_store
from components.dataset import versioning as v
from components.dataset.schema import ACCEPTED_SCHEMA
from components.stages.split.config import SplitConfig
from components.stages.split.core import SPLITS, split_table

READ_COLUMNS = ["doc_id", "text", "label", "source"]  # what the steps after this one read of a split


def split_to_files(store: Store, ref: v.VersionRef, split: SplitConfig, out_paths: dict[str, str],
                   workdir: str | None = None, batch_rows: int = ROW_GROUP_ROWS) -> dict[str, int]:
    """Writes each split's rows, in version order, to `out_paths[split]` in row groups of
    `batch_rows`; returns the row counts."""
    with ExitStack() as open_files:
        writers = {name: open_files.enter_context(FixedRowGroupWriter(out_paths[name], ACCEPTED_SCHEMA, batch_rows))
                   for name in SPLITS}
        for batch in v.read_batches(store, ref, batch_rows=batch_rows, workdir=workdir):
            for name, rows in split_table(batch, split).items():
                writers[name].write(rows)
        return {name: writer.close() for name, writer in writers.items()}


def split_version(store_uri: str, dataset: str, version: str, config: dict[str, Any],
                  out_paths: dict[str, str]) -> dict[str, Any]:
    """Writes train/validation/test to `out_paths`; returns the row counts and what was split
    (the resolved version and the split settings, which the featurize step keys its cache by)."""
    store = open_store(store_uri)
    ref = v.resolve(store, dataset, version)
    split = SplitConfig.model_validate(config)
    rows = split_to_files(store, ref, split, out_paths)
    return {"rows": rows, "dataset": dataset, "version": ref.version, "split": split.model_dump(mode="json")}


def read_split(path: str) -> pa.Table:
    """One split file as the evaluate and gate steps read it (the rows' id, text, label, source)."""
    return pq.read_table(path, columns=READ_COLUMNS)
