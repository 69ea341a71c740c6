"""Featurize executor: the store and file I/O around the pure fit/encode in core.py.

Everything streams: the split files are read a batch at a time to learn the labels (and, in
vocabulary mode, to count tokens, or Spark aggregates the counts), then encoded a batch at a time
into feature files of fixed row groups, so memory is bounded by a batch (plus the vocabulary's
counts) whatever the dataset's size. Training reads the feature files whole or one rank's shard.

The encoding of a (dataset version, split settings, feature settings) triple is kept once in the
store's feature cache (`common/layout.py`). The pipeline's featurize step writes it there as well
as into its own artifacts, so the search trials (separate pods: Katib Jobs or Optuna processes)
and the train step read what the featurize step computed; a trial whose searched parameters
change the feature settings encodes its own variant, cached the same way.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.config import SparkConfig, validate_section
from components.common.hashing import sha256_of_value
from components.common.layout import feature_cache_prefix
from components.common.shards import ROW_GROUP_ROWS, FixedRowGroupWriter, iter_batches, read_rows, shard_range
from components.common.spark import SparkSettings, check_engine
from components.common.storage import Store, open_store
from components.dataset import versioning as v
from components.stages.featurize.config import FeaturesConfig
from components.stages.featurize.core import (
    FEATURE_SCHEMA,
    FORMAT,
    SPLITS,
    Featurizer,
    empty_train_error,
    feature_stats,
    featurize_table,
    featurizer_for,
    token_counts,
    vocabulary_from_counts,
)
from components.stages.split.config import SplitConfig
from components.stages.split.executor import split_to_files

Shard = tuple[int, int]  # (rank, world size): which contiguous share of the train split to read


def cache_prefix(dataset: str, version: str, split: SplitConfig, features: FeaturesConfig) -> str:
    """Named by everything that determines the encoding (and the featurizer's format)."""
    key = sha256_of_value({"dataset": dataset, "version": version, "split": split.model_dump(mode="json"),
                           "features": features.model_dump(mode="json"), "format": FORMAT})[:20]
    return feature_cache_prefix(dataset, key)


def fit_file(train_path: str, config: FeaturesConfig, fitted_on: dict[str, Any], engine: str = "local",
             spark_settings: SparkSettings | None = None, batch_rows: int = ROW_GROUP_ROWS) -> Featurizer:
    """Learn the labels (and the vocabulary) from the train split's file, a batch at a time; with
    engine="spark" the vocabulary's token counts are a Spark aggregation (`spark_fit`). The hashing
    featurizer has nothing to aggregate: it is fitted and applied per batch by either engine."""
    check_engine(engine)
    if not pq.ParquetFile(train_path).metadata.num_rows:
        raise empty_train_error(fitted_on)
    labels: set[str] = set()
    for batch in iter_batches(train_path, columns=["label"], batch_rows=batch_rows):
        labels.update(pc.unique(batch.column("label")).to_pylist())
    featurizer = featurizer_for(labels, config, fitted_on)
    if config.kind == "vocabulary":
        if engine == "spark":
            from components.stages.featurize.spark_fit import spark_vocabulary  # lazy: starts a JVM

            featurizer.vocabulary = spark_vocabulary(train_path, config, spark_settings)
        else:
            counts: Counter[str] = Counter()
            for batch in iter_batches(train_path, columns=["text"], batch_rows=batch_rows):
                counts.update(token_counts(featurizer, batch.column("text")))
            featurizer.vocabulary = vocabulary_from_counts(counts, config)
    return featurizer


def encode_file(featurizer: Featurizer, rows_path: str, out_path: str,
                batch_rows: int = ROW_GROUP_ROWS) -> tuple[int, int]:
    """Encode a split's file into a feature file; returns (rows, ids summed over the rows)."""
    ids = 0
    with FixedRowGroupWriter(out_path, FEATURE_SCHEMA, batch_rows) as writer:
        for batch in iter_batches(rows_path, columns=["doc_id", "text", "label", "source"], batch_rows=batch_rows):
            features = featurize_table(featurizer, pa.Table.from_batches([batch]))
            ids += int(pc.sum(pc.list_value_length(features.column("ids"))).as_py() or 0)
            writer.write(features)
        return writer.close(), ids


def featurize_files(split_paths: dict[str, str], config: FeaturesConfig, fitted_on: dict[str, Any],
                    out_paths: dict[str, str], engine: str = "local", spark_settings: SparkSettings | None = None,
                    batch_rows: int = ROW_GROUP_ROWS) -> tuple[Featurizer, dict[str, tuple[int, int]]]:
    """Fit on the train file only, then encode every split's file with that one featurizer."""
    featurizer = fit_file(split_paths["train"], config, fitted_on, engine, spark_settings, batch_rows)
    return featurizer, {name: encode_file(featurizer, split_paths[name], out_paths[name], batch_rows)
                        for name in SPLITS}


def _publish(store: Store, prefix: str, featurizer: Featurizer, sizes: dict[str, tuple[int, int]],
             paths: dict[str, str]) -> None:
    """Upload the encoded splits already written at `paths`, then the featurizer and the marker."""
    for name, path in paths.items():
        store.upload(path, f"{prefix}/{name}.parquet")
    store.write_bytes(f"{prefix}/featurizer.json", featurizer.dumps())
    # last: a cache entry without done.json is incomplete and is rebuilt
    store.write_json(f"{prefix}/done.json", {"rows": {n: rows for n, (rows, _ids) in sizes.items()}})


def read_feature_files(paths: dict[str, str], shard: Shard | None = None) -> dict[str, pa.Table]:
    """The feature files as tables; with a shard, only that rank's share of train (validation and
    test stay whole: every rank evaluates on all of them)."""
    tables = {}
    for name, path in paths.items():
        if shard is not None and name == "train":
            rank, world_size = shard
            tables[name] = read_rows(path, *shard_range(pq.ParquetFile(path).metadata.num_rows, rank, world_size))
        else:
            tables[name] = pq.read_table(path)
    return tables


def _load_cached(store: Store, prefix: str, workdir: str | None = None,
                 shard: Shard | None = None) -> tuple[Featurizer, dict[str, pa.Table]]:
    featurizer = Featurizer.loads(store.read_bytes(f"{prefix}/featurizer.json"))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        paths = {n: store.local_copy(f"{prefix}/{n}.parquet", tmp) for n in SPLITS}
        return featurizer, read_feature_files(paths, shard)


def prepare_features(store: Store, dataset: str, version: str, split_config: dict, features_config: dict,
                     workdir: str | None = None, shard: Shard | None = None, engine: str = "local",
                     ) -> tuple[Featurizer, dict[str, pa.Table]]:
    """Split + fit + encode a dataset version (streamed through local files), or read the cached
    encoding of the same settings."""
    split_cfg = SplitConfig.model_validate(split_config)
    feat_cfg = FeaturesConfig.model_validate(features_config)
    prefix = cache_prefix(dataset, version, split_cfg, feat_cfg)
    if store.exists(f"{prefix}/done.json"):
        return _load_cached(store, prefix, workdir, shard)
    ref = v.resolve(store, dataset, version)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rows = {name: f"{tmp}/{name}-rows.parquet" for name in SPLITS}
        split_to_files(store, ref, split_cfg, rows, workdir=tmp)
        paths = {name: f"{tmp}/{name}.parquet" for name in SPLITS}
        featurizer, sizes = featurize_files(rows, feat_cfg, {"dataset": dataset, "version": ref.version}, paths,
                                            engine)
        _publish(store, prefix, featurizer, sizes, paths)
        return featurizer, read_feature_files(paths, shard)


def featurize_split_files(store_uri: str, split_paths: dict[str, str], split_meta: dict[str, Any],
                          features_config: dict, featurizer_path: str,
                          out_paths: dict[str, str], engine: str = "local",
                          engine_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pipeline step: fit on the split step's train file, encode its three files, write the
    featurizer and feature files, and publish the same encoding to the store's feature cache.
    engine_config: {"spark": data.spark}; Spark runs `master` (local[N]) in this step's process."""
    cfg = FeaturesConfig.model_validate(features_config)
    spark = validate_section(SparkConfig, (engine_config or {}).get("spark", {}), "data.spark")
    dataset, version = split_meta["dataset"], split_meta["version"]
    featurizer, sizes = featurize_files(split_paths, cfg, {"dataset": dataset, "version": version}, out_paths,
                                        engine, spark.local_settings())
    with open(featurizer_path, "wb") as handle:
        handle.write(featurizer.dumps())
    store = open_store(store_uri)
    prefix = cache_prefix(dataset, version, SplitConfig.model_validate(split_meta["split"]), cfg)
    if not store.exists(f"{prefix}/done.json"):  # the step's own files, uploaded as they are
        _publish(store, prefix, featurizer, sizes, out_paths)
    return {"stats": feature_stats(featurizer, sizes), "cache": store.url(prefix), "dataset": dataset,
            "version": version, "split": split_meta["split"], "features": cfg.model_dump(mode="json")}


def featurize_stored(job: dict[str, Any], spark, parts_prefix: str) -> dict[str, Any]:
    """The featurize step on the cluster engine (a SparkApplication's driver): the split files were
    staged in the store (`job["staged"]`: split -> key); the labels are read by the driver, the
    vocabulary is a Spark aggregation and the encoding Spark tasks, each over a range of a file's
    row groups read by ranged reads; the parts are joined in order into one feature file per split
    with fixed row groups, and published to the feature cache, exactly as the in-process step
    leaves them. Returns what `featurize_split_files` returns."""
    # lazy: pyspark starts a JVM; only engine=spark needs it
    from components.stages.featurize.spark_fit import stored_encode, stored_vocabulary

    store = open_store(job["store"])
    cfg = FeaturesConfig.model_validate(job["features"])
    keys = job["staged"]
    dataset, version = job["dataset"], job["version"]
    fitted_on = {"dataset": dataset, "version": version}
    parallelism = int(job.get("parallelism", 2))
    labels: set[str] = set()
    with store.open_ranged(keys["train"]) as handle:
        train = pq.ParquetFile(handle)
        if not train.metadata.num_rows:
            raise empty_train_error(fitted_on)
        for batch in train.iter_batches(batch_size=ROW_GROUP_ROWS, columns=["label"]):
            labels.update(pc.unique(batch.column("label")).to_pylist())
    featurizer = featurizer_for(labels, cfg, fitted_on)
    if cfg.kind == "vocabulary":
        featurizer.vocabulary = stored_vocabulary(spark, job["store"], keys["train"], cfg, parallelism)
    parts = stored_encode(spark, job["store"], keys, featurizer, parts_prefix, parallelism)
    prefix = cache_prefix(dataset, version, SplitConfig.model_validate(job["split"]), cfg)
    with tempfile.TemporaryDirectory() as tmp:
        paths, sizes = {}, {}
        for name in SPLITS:
            paths[name] = f"{tmp}/{name}.parquet"
            ids = 0
            with FixedRowGroupWriter(paths[name], FEATURE_SCHEMA) as writer:
                for part in (p for p in parts if p["split"] == name):
                    with store.open_ranged(part["key"]) as handle:
                        for batch in pq.ParquetFile(handle).iter_batches(batch_size=ROW_GROUP_ROWS):
                            writer.write(batch)
                    ids += part["ids"]
                sizes[name] = (writer.close(), ids)
        if not store.exists(f"{prefix}/done.json"):
            _publish(store, prefix, featurizer, sizes, paths)
    store.delete(parts_prefix)
    return {"stats": feature_stats(featurizer, sizes), "cache": store.url(prefix), "dataset": dataset,
            "version": version, "split": job["split"], "features": cfg.model_dump(mode="json")}


def fetch_cached(store: Store, cache: str, featurizer_path: str, out_paths: dict[str, str]) -> None:
    """The feature cache entry at `cache` (a store URL) copied into a step's output files."""
    prefix = cache[len(store.uri.rstrip("/")) + 1:]
    store.download(f"{prefix}/featurizer.json", featurizer_path)
    for name, path in out_paths.items():
        store.download(f"{prefix}/{name}.parquet", path)


def stats_of_files(featurizer_path: str, paths: dict[str, str]) -> dict[str, float]:
    """The step's stats from its output files (what a cluster run fetched from the cache)."""
    with open(featurizer_path, "rb") as handle:
        featurizer = Featurizer.loads(handle.read())
    sizes = {}
    for name, path in paths.items():
        rows = ids = 0
        for batch in iter_batches(path, columns=["ids"]):
            rows += batch.num_rows
            ids += int(pc.sum(pc.list_value_length(batch.column("ids"))).as_py() or 0)
        sizes[name] = (rows, ids)
    return feature_stats(featurizer, sizes)


def load_feature_files(featurizer_path: str, paths: dict[str, str],
                       shard: Shard | None = None) -> tuple[Featurizer, dict[str, pa.Table]]:
    """What the featurize step wrote, read back by the step that consumes its artifacts."""
    with open(featurizer_path, "rb") as handle:
        featurizer = Featurizer.loads(handle.read())
    return featurizer, read_feature_files(paths, shard)


def step_features(metadata: dict[str, Any], split: SplitConfig, features: FeaturesConfig, featurizer_path: str,
                  paths: dict[str, str], shard: Shard | None = None) -> tuple[Featurizer, dict[str, pa.Table]] | None:
    """The featurize step's own files when they were made with these settings, else None (the
    search chose other feature settings: the caller encodes that variant itself)."""
    # Compared as validated models: KFP metadata carries numbers as floats (262144.0).
    if SplitConfig.model_validate(metadata["split"]) != split or \
            FeaturesConfig.model_validate(metadata["features"]) != features:
        return None
    return load_feature_files(featurizer_path, paths, shard)
