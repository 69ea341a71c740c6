"""The featurizer: hashing and vocabulary modes, fitted on train only, one JSON round trip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from components.common.errors import InputError
from components.featurize.config import FeaturesConfig
from components.featurize.core import Featurizer, fit
from components.split.config import SplitConfig


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
    import pyarrow.parquet as pq

    from components.featurize.executor import featurize_split_files, prepare_features, step_features
    from components.split.executor import split_version
    from tests.training_data import ingest_corpus

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

    same = step_features(meta, SplitConfig(), FeaturesConfig(num_buckets=4096), str(tmp_path / "featurizer.json"),
                         outs)
    assert same is not None and same[0].dumps() == cached.dumps()
    assert step_features(meta, SplitConfig(), FeaturesConfig(num_buckets=4096, char_ngrams=(3, 4)),
                         str(tmp_path / "featurizer.json"), outs) is None
    assert step_features(meta, SplitConfig(test=0.2), FeaturesConfig(num_buckets=4096),
                         str(tmp_path / "featurizer.json"), outs) is None
