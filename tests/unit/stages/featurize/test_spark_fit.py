"""The featurize step's Spark fit (`local[2]`) learns what the streamed in-process fit learns."""

from __future__ import annotations

import os

import pytest

from components.common.config import PROJECT_ROOT
from components.common.storage import FileStore
from components.dataset import versioning as v
from components.stages.ingest.executor import ingest

pytest.importorskip("pyspark")


def test_the_spark_vocabulary_fit_equals_the_in_process_fit_on_the_bundled_corpus(tmp_path, spark):
    """The featurize step's Spark aggregation (token counts per task, summed by token, min_freq
    and the cap applied in Spark) learns the same vocabulary as the streamed in-process fit."""
    from components.composition.config import load_config
    from components.stages.featurize.config import FeaturesConfig
    from components.stages.featurize.executor import fit_file
    from components.stages.featurize.spark_fit import spark_vocabulary
    from components.stages.split.executor import split_to_files

    cfg = load_config()
    sources = [str(PROJECT_ROOT / p) for p in cfg.data.reference]
    if not all(os.path.isdir(p) for p in sources):
        pytest.skip("bundled corpus not fetched (make data)")
    store = FileStore(str(tmp_path / "store"))
    version = ingest(sources, "sa", store, cfg.data.source, cfg.cleaning).version
    rows = {n: str(tmp_path / f"{n}.parquet") for n in ("train", "validation", "test")}
    split_to_files(store, v.resolve(store, "sa", version), cfg.split, rows, batch_rows=500)
    fitted_on = {"dataset": "sa", "version": version}
    for features in (FeaturesConfig(kind="vocabulary", min_freq=3, num_buckets=5000),  # capped by num_buckets
                     FeaturesConfig(kind="vocabulary", min_freq=40, num_buckets=1 << 20, char_ngrams=None)):
        local = fit_file(rows["train"], features, fitted_on, batch_rows=500)
        distributed = spark_vocabulary(rows["train"], features, spark=spark)
        assert len(local.vocabulary) > 100
        assert distributed == local.vocabulary
    assert len(local.vocabulary) < 5000 - 1  # the second config is bounded by min_freq, not the cap
    through_engine = fit_file(rows["train"], features, fitted_on, engine="spark")  # its own session: reuses this one
    assert through_engine.dumps() == local.dumps()
