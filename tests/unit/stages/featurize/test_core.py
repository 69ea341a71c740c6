"""The featurizer: hashing and vocabulary modes, fitted on train only, one JSON round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError
from components.stages.featurize.config import FeaturesConfig
from components.stages.featurize.core import Featurizer, fit
from components.stages.split.config import SplitConfig


def test_featurizer_hashing_and_vocabulary_round_trip_and_fit_on_train_only():
    train = pa.array(["the cat sat", "the dog ran", "a cat ran"])
    labels = pa.array(["pets", "pets", "other"])
    for cfg in (FeaturesConfig(word_ngrams=(1, 2), char_ngrams=(3, 4)),
                FeaturesConfig(word_ngrams=None, char_ngrams=(3, 4)),  # a feature group dropped
                FeaturesConfig(kind="vocabulary", min_freq=2, word_ngrams=(1, 1))):
        feat = fit(train, labels, cfg)
        enc = feat.encode(pa.array(["the cat", "zebra unseen", ""]))
        assert len(enc) == 3 and all(enc.offsets[1:] > enc.offsets[:-1])  # every bag non-empty
        again = Featurizer.loads(feat.dumps()).encode(pa.array(["the cat", "zebra unseen", ""]))
        assert np.array_equal(enc.ids, again.ids) and np.array_equal(enc.offsets, again.offsets)
        assert enc.ids.max() < feat.num_ids
    vocab = fit(train, labels, FeaturesConfig(kind="vocabulary", min_freq=2, word_ngrams=(1, 1)))
    assert set(vocab.vocabulary) == {"w:the", "w:cat", "w:ran"}  # learned from train only, min_freq 2
    assert vocab.encode(pa.array(["zebra"])).ids.tolist() == [0]  # unknown -> reserved id
    assert vocab.encode_labels(pa.array(["other", "pets"])).tolist() == [0, 1]
    with pytest.raises(InputError, match="not seen in the training split"):
        vocab.encode_labels(pa.array(["fish"]))
    with pytest.raises(InputError, match="needs two"):
        fit(train, pa.array(["a", "a", "a"]), FeaturesConfig())
    words = fit(train, labels, FeaturesConfig()).encode(pa.array(["the cat"])).ids
    chars = fit(train, labels, FeaturesConfig(word_ngrams=None, char_ngrams=(3, 3))).encode(pa.array(["the cat"])).ids
    assert len(words) == 3 and len(chars) == 6  # 'the', 'cat', 'the cat' vs the char 3-grams of '<the>', '<cat>'
    assert set(words.tolist()).isdisjoint(chars.tolist())  # word and char features hash apart ("w:" / "c:")
    with pytest.raises(ValueError, match="keep at least one feature group"):
        FeaturesConfig(word_ngrams=None, char_ngrams=None)


def test_the_featurize_step_publishes_the_encoding_that_training_then_reads(tmp_path, file_store):
    """What the featurize step writes is what the search trials and the train step train on: the
    same featurizer bytes and feature rows from its files, from the store's cache, and as the
    train step takes them; other feature settings are not mistaken for it."""
    from components.stages.featurize.executor import featurize_split_files, prepare_features, step_features
    from components.stages.split.executor import split_version
    from tests.support.training_data import ingest_corpus

    version = ingest_corpus(tmp_path, file_store)
    splits = {n: str(tmp_path / f"{n}.parquet") for n in ("train", "validation", "test")}
    described = split_version(file_store.uri, "toy", version, {}, splits)
    # KFP hands metadata over as a protobuf Struct: every number becomes a float
    as_kfp = {**described, "split": {k: float(v) if isinstance(v, int | float) else v
                                     for k, v in described["split"].items()}}
    outs = {n: str(tmp_path / f"{n}-features.parquet") for n in splits}
    feats = {"num_buckets": 4096}
    made = featurize_split_files(file_store.uri, splits, as_kfp, feats, str(tmp_path / "featurizer.json"), outs)
    assert made["cache"].startswith(file_store.url("cache/features/toy/"))
    meta = {**made, "features": {**made["features"], "num_buckets": 4096.0}}

    cached, tables = prepare_features(file_store, "toy", version, {}, feats)  # what a trial reads
    assert cached.dumps() == (tmp_path / "featurizer.json").read_bytes()
    for name, path in outs.items():
        assert tables[name].equals(pq.read_table(path))
    # Two training ranks: each reads its own share of train, and all of validation and test.
    shards = [prepare_features(file_store, "toy", version, {}, feats, shard=(rank, 2))[1] for rank in (0, 1)]
    assert pa.concat_tables([s["train"] for s in shards]).equals(tables["train"])
    assert abs(shards[0]["train"].num_rows - shards[1]["train"].num_rows) <= 1
    assert all(s[n].equals(tables[n]) for s in shards for n in ("validation", "test"))

    same = step_features(meta, SplitConfig(), FeaturesConfig(num_buckets=4096), str(tmp_path / "featurizer.json"),
                         outs)
    assert same is not None and same[0].dumps() == cached.dumps()
    assert step_features(meta, SplitConfig(), FeaturesConfig(num_buckets=4096, char_ngrams=(3, 4)),
                         str(tmp_path / "featurizer.json"), outs) is None
    assert step_features(meta, SplitConfig(test=0.2), FeaturesConfig(num_buckets=4096),
                         str(tmp_path / "featurizer.json"), outs) is None


@pytest.mark.parametrize("kind", ["hashing", "vocabulary"])
def test_streamed_split_and_featurize_give_what_the_in_memory_functions_give(tmp_path, file_store, kind):
    """The split and featurize steps stream 37-row batches through files (so the vocabulary's
    counts add up across batches); their rows, featurizer and features equal the in-memory
    functions' on the whole version, and the files are written in fixed row groups."""
    from components.dataset import versioning as v
    from components.stages.featurize.core import SPLITS, fit_and_encode
    from components.stages.featurize.executor import featurize_files
    from components.stages.split.core import split_table
    from components.stages.split.executor import split_to_files
    from tests.support.training_data import ingest_corpus

    version = ingest_corpus(tmp_path, file_store)
    ref = v.resolve(file_store, "toy", version)
    rows = {n: str(tmp_path / f"{n}-rows.parquet") for n in SPLITS}
    counts = split_to_files(file_store, ref, SplitConfig(), rows, batch_rows=37)
    whole = split_table(v.read_table(file_store, ref), SplitConfig())
    for name in SPLITS:
        assert pq.read_table(rows[name]).equals(whole[name]) and counts[name] == whole[name].num_rows > 0
        groups = pq.ParquetFile(rows[name]).metadata
        assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups - 1)] == \
            [37] * (groups.num_row_groups - 1)

    cfg = FeaturesConfig(kind=kind, min_freq=2, num_buckets=4096)
    fitted_on = {"dataset": "toy", "version": version}
    feats = {n: str(tmp_path / f"{n}.parquet") for n in SPLITS}
    featurizer, sizes = featurize_files(rows, cfg, fitted_on, feats, batch_rows=37)
    expected, tables = fit_and_encode(whole, cfg, fitted_on)
    assert featurizer.dumps() == expected.dumps()
    assert kind == "hashing" or len(featurizer.vocabulary) > 20
    for name in SPLITS:
        assert pq.read_table(feats[name]).equals(tables[name])
        assert sizes[name] == (tables[name].num_rows, sum(len(x) for x in tables[name].column("ids").to_pylist()))


def test_an_unknown_engine_and_an_empty_train_split_are_named(tmp_path):
    from components.common.errors import ConfigError
    from components.dataset.schema import ACCEPTED_SCHEMA
    from components.stages.featurize.executor import fit_file

    path = str(tmp_path / "train.parquet")
    pq.write_table(ACCEPTED_SCHEMA.empty_table(), path)
    with pytest.raises(ConfigError, match=r"data\.engine: 'dask' is not one of"):
        fit_file(path, FeaturesConfig(), {}, engine="dask")
    with pytest.raises(InputError, match="dataset toy@v1: the training split is empty"):
        fit_file(path, FeaturesConfig(), {"dataset": "toy", "version": "v1"})


def test_shards_are_contiguous_balanced_and_cover_the_rows_whatever_the_row_groups(tmp_path):
    from components.common.shards import FixedRowGroupWriter, read_rows, shard_range

    table = pa.table({"i": pa.array(range(1000), pa.int64())})
    files = []
    for arrival in (100, 333, 1000):  # the same rows handed over in different batches
        path = str(tmp_path / f"rows-{arrival}.parquet")
        with FixedRowGroupWriter(path, table.schema, rows_per_group=64) as writer:
            for start in range(0, 1000, arrival):
                writer.write(table.slice(start, arrival).to_batches()[0])
            assert writer.close() == 1000
        files.append(Path(path).read_bytes())
    assert files[0] == files[1] == files[2]  # same rows, same bytes
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [64] * 15 + [40]
    for world_size in (1, 2, 3, 7, 1001):
        pieces = [read_rows(path, *shard_range(1000, rank, world_size)) for rank in range(world_size)]
        sizes = [p.num_rows for p in pieces]
        assert max(sizes) - min(sizes) <= 1
        assert pa.concat_tables(pieces).column("i").to_pylist() == list(range(1000))
    assert read_rows(path, 130, 131).column("i").to_pylist() == [130]
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        shard_range(10, 2, 2)



@pytest.mark.parametrize("config", [
    FeaturesConfig(),
    FeaturesConfig(word_ngrams=(1, 3), char_ngrams=(3, 5), num_buckets=4096),
    FeaturesConfig(word_ngrams=None, char_ngrams=(2, 4)),
    FeaturesConfig(word_ngrams=(2, 2)),
    FeaturesConfig(kind="vocabulary", min_freq=2, word_ngrams=(1, 2), char_ngrams=(3, 3)),
])
def test_a_few_documents_encode_in_python_to_exactly_the_ids_of_the_arrow_path(config):
    """What a one-text request takes (Featurizer._encode_small) against the batch path, on
    documents with no token, one token, repeats and non-ASCII words."""
    train = pa.array(["free cash prize now", "meeting notes today", "free free prize", "Über café naïve"] * 3)
    featurizer = fit(train, pa.array(["spam", "ham", "spam", "ham"] * 3), config)
    rng = random.Random(7)
    words = ["free", "cash", "prize", "now", "meeting", "notes", "über", "café", "zq", "x", "naïve"]
    docs = [[], ["free"], ["free", "free", "free"], ["unknown", "tokens", "only"]]
    docs += [[rng.choice(words) for _ in range(rng.randint(0, 12))] for _ in range(40)]
    for start in range(0, len(docs), 5):
        batch = docs[start:start + 5]
        small = featurizer.encode_tokenized(batch)
        arrow = featurizer.encode_tokenized(pa.array(batch, pa.list_(pa.large_string())))
        assert small.offsets.tolist() == arrow.offsets.tolist() and small.ids.tolist() == arrow.ids.tolist(), batch
    texts = pa.array(["Free CASH prize!", "", None, "naïve café über"])
    assert featurizer.encode(texts).ids.tolist() == featurizer.encode_tokenized(
        pa.array([featurizer.tokenize(t or "") for t in texts.to_pylist()], pa.list_(pa.large_string()))).ids.tolist()
    # a plain list (what the predictor passes) gives the same ids as Arrow, short or long
    for listed in (texts.to_pylist(), texts.to_pylist() * 5):
        from_list, from_arrow = featurizer.encode(listed), featurizer.encode(pa.array(listed, pa.large_string()))
        assert from_list.ids.tolist() == from_arrow.ids.tolist()
        assert from_list.offsets.tolist() == from_arrow.offsets.tolist()
