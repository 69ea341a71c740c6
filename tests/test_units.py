"""Fast unit tests of the pure core: MIME, sniffing, keys, dedup index, split, featurizer, config."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from components.common.errors import ConfigError, InputError
from components.config import config_from_dict, load_config
from components.dataset.schema import content_digests, doc_ids_from_digests, keys_from_digests, keys_from_doc_ids
from components.featurize.config import FeaturesConfig
from components.featurize.core import Featurizer, fit
from components.ingest.clean import KeyIndex
from components.ingest.mime import email_to_text, html_to_text, looks_like_email
from components.ingest.readers import sniff_format
from components.split.config import SplitConfig
from components.split.core import assign, split_table


def test_doc_ids_are_sha256_prefixes_and_keys_round_trip():
    import hashlib

    texts = pa.array(["alpha", "beta", "gamma ☃"])
    digests = content_digests(texts)
    ids = doc_ids_from_digests(digests).to_pylist()
    assert ids == [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts.to_pylist()]
    keys = keys_from_digests(digests)
    assert keys.tolist() == [int(i[:16], 16) for i in ids]
    assert np.array_equal(keys_from_doc_ids(pa.array(ids)), keys)


def test_key_index_matches_a_python_set():
    rng = np.random.default_rng(1)
    index, seen = KeyIndex(), set()
    for _ in range(30):
        batch = rng.integers(0, 5000, size=200, dtype=np.uint64)
        assert index.contains(batch).tolist() == [int(k) in seen for k in batch]
        index.add(batch)
        seen.update(int(k) for k in batch)
    assert len(index.runs) < 10  # runs are merged, not one per batch
    assert set(index.all_keys().tolist()) == seen


def test_html_to_text_drops_scripts_and_keeps_structure():
    text = html_to_text("<html><style>x{}</style><p>One&amp;Two</p><script>evil()</script><div>Three</div></html>")
    assert text.split() == ["One&Two", "Three"]


def test_email_subject_encoded_words_and_charset_supersets():
    raw = b"Subject: =?iso-8859-1?q?caf=E9?=\nContent-Type: text/plain; charset=gb2312\n\n" + \
        "中文 testing 碁".encode("gbk")  # 碁 is GBK, not GB2312: decoded through the superset
    assert email_to_text(raw) == "café\n\n中文 testing 碁"


@pytest.mark.parametrize("name, head, fmt", [
    ("a.csv", b"text,label\n", "csv"), ("a.csv.gz", b"\x1f\x8b", "csv"), ("a.jsonl", b"{}", "jsonl"),
    ("x", b'{"text": 1}', "jsonl"), ("a.parquet", b"PAR1", "parquet"), ("m.txt", b"From x\nSubject: y\n", "email"),
    ("m.txt", b"Received: a\nSubject: b\n\nbody", "email"), ("n.txt", b"just some words", "text"),
    ("img.png", b"\x89PNG\x00\x00", "unknown"),
])
def test_sniff_format(name, head, fmt):
    assert sniff_format(name, head) == fmt


def test_looks_like_email_rejects_prose_with_a_colon():
    assert not looks_like_email(b"Note: this is prose.\nIt has a colon but no headers\n")


def test_split_is_deterministic_stable_and_proportional():
    ids = doc_ids_from_digests(content_digests(pa.array([f"doc {i}" for i in range(20_000)])))
    cfg = SplitConfig(validation=0.1, test=0.2)
    codes = assign(ids, cfg)
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert np.allclose(shares, [0.7, 0.1, 0.2], atol=0.015)
    # Growing the dataset never moves an existing document.
    more = doc_ids_from_digests(content_digests(pa.array([f"doc {i}" for i in range(25_000)])))
    assert np.array_equal(assign(more, cfg)[:20_000], codes)
    assert not np.array_equal(assign(ids, SplitConfig(validation=0.1, test=0.2, salt="other")), codes)
    table = pa.table({"doc_id": ids, "x": range(20_000)})
    parts = split_table(table, cfg)
    assert sum(t.num_rows for t in parts.values()) == 20_000


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


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"cleaning: Value error, min_chars \(9\) > max_chars \(2\)"):
        config_from_dict({"cleaning": {"min_chars": 9, "max_chars": 2}})
    with pytest.raises(ConfigError, match=r"features: .*word_ngrams: expected \[min, max\]"):
        config_from_dict({"features": {"word_ngrams": [3, 1]}})
    with pytest.raises(ConfigError, match=r"data\.sourse: Extra inputs are not permitted"):
        config_from_dict({"data": {"sourse": {}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_bundled_configs_load():
    from components.common.config import PROJECT_ROOT

    for name in ("spamassassin", "tweets"):
        cfg = load_config(PROJECT_ROOT / "configs" / f"{name}.yaml")
        assert cfg.data.dataset == name and cfg.data.reference
