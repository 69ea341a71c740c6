"""Featurize executor: the store and file I/O around the pure fit/encode in core.py.

The encoding of a (dataset version, split settings, feature settings) triple is kept once in the
store's feature cache (`common/layout.py`). The pipeline's featurize step writes it there as well
as into its own artifacts, so the search trials (separate pods: Katib Jobs or Optuna processes)
and the train step read what the featurize step computed; a trial whose searched parameters
change the feature settings encodes its own variant, cached the same way.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from components.common.hashing import sha256_of_value
from components.common.layout import feature_cache_prefix
from components.common.storage import Store, open_store
from components.dataset import versioning as v
from components.featurize.config import FeaturesConfig
from components.featurize.core import FORMAT, SPLITS, Featurizer, feature_stats, fit_and_encode
from components.split.config import SplitConfig
from components.split.core import split_table


def cache_prefix(dataset: str, version: str, split: SplitConfig, features: FeaturesConfig) -> str:
    """Named by everything that determines the encoding (and the featurizer's format)."""
    key = sha256_of_value({"dataset": dataset, "version": version, "split": split.model_dump(mode="json"),
                           "features": features.model_dump(mode="json"), "format": FORMAT})[:20]
    return feature_cache_prefix(dataset, key)


def _write_split_files(tables: dict[str, pa.Table], paths: dict[str, str]) -> None:
    for name, table in tables.items():
        pq.write_table(table, paths[name], compression="zstd")


def _publish(store: Store, prefix: str, featurizer: Featurizer, tables: dict[str, pa.Table],
             paths: dict[str, str]) -> None:
    """Upload the encoded splits already written at `paths`, then the featurizer and the marker."""
    for name, path in paths.items():
        store.upload(path, f"{prefix}/{name}.parquet")
    store.write_bytes(f"{prefix}/featurizer.json", featurizer.dumps())
    # last: a cache entry without done.json is incomplete and is rebuilt
    store.write_json(f"{prefix}/done.json", {"rows": {n: t.num_rows for n, t in tables.items()}})


def _load_cached(store: Store, prefix: str, workdir: str | None = None) -> tuple[Featurizer, dict[str, pa.Table]]:
    featurizer = Featurizer.loads(store.read_bytes(f"{prefix}/featurizer.json"))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tables = {n: pq.read_table(store.local_copy(f"{prefix}/{n}.parquet", tmp)) for n in SPLITS}
    return featurizer, tables


def prepare_features(store: Store, dataset: str, version: str, split_config: dict, features_config: dict,
                     workdir: str | None = None) -> tuple[Featurizer, dict[str, pa.Table]]:
    """Split + fit + encode a dataset version, or read the cached encoding of the same settings."""
    split_cfg = SplitConfig.model_validate(split_config)
    feat_cfg = FeaturesConfig.model_validate(features_config)
    prefix = cache_prefix(dataset, version, split_cfg, feat_cfg)
    if store.exists(f"{prefix}/done.json"):
        return _load_cached(store, prefix, workdir)
    ref = v.resolve(store, dataset, version)
    parts = split_table(v.read_table(store, ref), split_cfg)
    featurizer, tables = fit_and_encode(parts, feat_cfg, {"dataset": dataset, "version": ref.version})
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = {name: f"{tmp}/{name}.parquet" for name in tables}
        _write_split_files(tables, paths)
        _publish(store, prefix, featurizer, tables, paths)
    return featurizer, tables


def featurize_split_files(store_uri: str, split_paths: dict[str, str], split_meta: dict[str, Any],
                          features_config: dict, featurizer_path: str,
                          out_paths: dict[str, str]) -> dict[str, Any]:
    """The pipeline step: fit on the split step's train file, encode its three files, write the
    featurizer and feature files, and publish the same encoding to the store's feature cache."""
    cfg = FeaturesConfig.model_validate(features_config)
    dataset, version = split_meta["dataset"], split_meta["version"]
    parts = {name: pq.read_table(path) for name, path in split_paths.items()}
    featurizer, tables = fit_and_encode(parts, cfg, {"dataset": dataset, "version": version})
    with open(featurizer_path, "wb") as handle:
        handle.write(featurizer.dumps())
    _write_split_files(tables, out_paths)
    store = open_store(store_uri)
    prefix = cache_prefix(dataset, version, SplitConfig.model_validate(split_meta["split"]), cfg)
    if not store.exists(f"{prefix}/done.json"):  # the step's own files, uploaded as they are
        _publish(store, prefix, featurizer, tables, out_paths)
    return {"stats": feature_stats(featurizer, tables), "cache": store.url(prefix), "dataset": dataset,
            "version": version, "split": split_meta["split"], "features": cfg.model_dump(mode="json")}


def load_feature_files(featurizer_path: str, paths: dict[str, str]) -> tuple[Featurizer, dict[str, pa.Table]]:
    """What the featurize step wrote, read back by the step that consumes its artifacts."""
    with open(featurizer_path, "rb") as handle:
        featurizer = Featurizer.loads(handle.read())
    return featurizer, {name: pq.read_table(path) for name, path in paths.items()}


def step_features(metadata: dict[str, Any], split: SplitConfig, features: FeaturesConfig, featurizer_path: str,
                  paths: dict[str, str]) -> tuple[Featurizer, dict[str, pa.Table]] | None:
    """The featurize step's own files when they were made with these settings, else None (the
    search chose other feature settings: the caller encodes that variant itself)."""
    # Compared as validated models: KFP metadata carries numbers as floats (262144.0).
    if SplitConfig.model_validate(metadata["split"]) != split or \
            FeaturesConfig.model_validate(metadata["features"]) != features:
        return None
    return load_feature_files(featurizer_path, paths)
