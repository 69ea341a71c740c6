"""Split executor: read a dataset version from the store, write the three splits as Parquet."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from components.common.storage import open_store
from components.dataset import versioning as v
from components.split.config import SplitConfig
from components.split.core import split_table


def split_version(store_uri: str, dataset: str, version: str, config: dict[str, Any],
                  out_paths: dict[str, str]) -> dict[str, Any]:
    """Writes train/validation/test to `out_paths`; returns the row counts and what was split
    (the resolved version and the split settings, which the featurize step keys its cache by)."""
    store = open_store(store_uri)
    ref = v.resolve(store, dataset, version)
    split = SplitConfig.model_validate(config)
    parts = split_table(v.read_table(store, ref), split)
    for name, table in parts.items():
        pq.write_table(table, out_paths[name], compression="zstd")
    return {"rows": {name: table.num_rows for name, table in parts.items()},
            "dataset": dataset, "version": ref.version, "split": split.model_dump(mode="json")}
