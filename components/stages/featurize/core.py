"""Text -> token ids for an EmbeddingBag-style model, fitted on the training split only.

Tokens are word n-grams and (optionally) fastText-style character n-grams of each word, mapped
to ids by a stable hash (`hashing`) or a vocabulary learned from train (`vocabulary`). Id 0 is
reserved for "no known token", so every document has at least one id.

The fitted featurizer is one JSON file; the predictor loads it unchanged, so training and serving
tokenize identically. The work is vectorized with Arrow: Python only touches each *distinct*
token once per batch.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.common.errors import InputError
from components.stages.featurize.config import FeaturesConfig

FORMAT = 2
# Tokens are maximal runs of letters and digits (Unicode: str.isalnum), after NFC and lower-casing.
# One Python implementation for training and serving: Arrow's regex kernels recompile Unicode
# classes on every call (~2.4 ms), which a single-text request cannot amortize.
_SEPARATORS = re.compile(r"[\W_]+")
SMALL_BATCH = 8  # documents up to which encoding runs in plain Python (Featurizer._encode_small)


def _stable_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


def _char_ngrams(word: str, lo: int, hi: int) -> list[str]:
    marked = f"<{word}>"
    return [marked[i:i + n] for n in range(lo, hi + 1) for i in range(len(marked) - n + 1)]


@dataclass
class Encoded:
    """CSR layout: ids of document i are ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def as_arrow(self) -> pa.Array:
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), pa.array(self.ids, pa.int32()))


@dataclass
class Featurizer:
    config: FeaturesConfig
    labels: list[str] = field(default_factory=list)
    vocabulary: dict[str, int] = field(default_factory=dict)  # vocabulary mode only
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def num_ids(self) -> int:
        """Size of the id space (the embedding table's rows)."""
        if self.config.kind == "hashing":
            return self.config.num_buckets
        return len(self.vocabulary) + 1

    # -- tokenization --------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text)
        if self.config.lowercase:
            text = text.lower()
        return [t for t in _SEPARATORS.split(text) if t][: self.config.max_tokens]

    def _words(self, texts: pa.Array) -> pa.ListArray:
        tokenize = self.tokenize
        return pa.array([tokenize(t or "") for t in texts.to_pylist()], pa.list_(pa.large_string()))

    def _token_streams(self, words: pa.ListArray):
        """Yield (flat token strings, parent document index) per feature kind, from tokenized documents."""
        flat = pc.list_flatten(words)
        parents = pc.list_parent_indices(words).to_numpy()
        lo, hi = self.config.word_ngrams or (1, 0)  # None: no word features (characters only)
        for n in range(lo, hi + 1):
            if n == 1:
                yield "w", flat, parents
                continue
            if len(flat) < n:
                continue
            pieces = [flat.slice(i, len(flat) - n + 1) for i in range(n)]
            grams = pc.binary_join_element_wise(*pieces, pa.scalar(" ", flat.type))
            same_doc = parents[: len(flat) - n + 1] == parents[n - 1:]
            keep = pa.array(same_doc)
            yield "w", grams.filter(keep), parents[: len(flat) - n + 1][same_doc]
        if self.config.char_ngrams:
            yield "c", flat, parents

    def _ids_for_unique(self, kind: str, uniques: list[str]) -> list[list[int]] | np.ndarray:
        cfg = self.config
        if kind == "w":
            if cfg.kind == "hashing":
                return np.fromiter((1 + _stable_hash("w:" + t) % (cfg.num_buckets - 1) for t in uniques),
                                   dtype=np.int64, count=len(uniques))
            return np.fromiter((self.vocabulary.get("w:" + t, 0) for t in uniques), dtype=np.int64,
                               count=len(uniques))
        lo, hi = cfg.char_ngrams
        out = []
        for word in uniques:
            grams = _char_ngrams(word, lo, hi)
            if cfg.kind == "hashing":
                out.append([1 + _stable_hash("c:" + g) % (cfg.num_buckets - 1) for g in grams])
            else:
                out.append([i for g in grams if (i := self.vocabulary.get("c:" + g, 0))])
        return out

    def encode(self, texts: pa.Array | list[str]) -> Encoded:
        """Ids of each text (null: no tokens). A short list (a request of a few texts) is encoded as
        it is: converting it to Arrow and back would cost more than the hashing."""
        if len(texts) <= SMALL_BATCH:
            tokenize = self.tokenize
            listed = texts.to_pylist() if isinstance(texts, pa.Array) else texts
            return self._encode_small([tokenize(t or "") for t in listed])
        if not isinstance(texts, pa.Array):
            texts = pa.array(texts, pa.large_string())
        return self.encode_tokenized(self._words(texts))

    def _encode_small(self, docs: list[list[str]]) -> Encoded:
        """encode_tokenized for a few documents in plain Python, the same ids in the same order
        (unigrams, then each longer word n-gram, then character n-grams, per document): a request
        of one text would otherwise spend more time in Arrow kernel dispatch than in hashing."""
        lo, hi = self.config.word_ngrams or (1, 0)
        ids: list[int] = []
        offsets = [0]
        for tokens in docs:
            doc: list[int] = []
            for n in range(lo, hi + 1):
                grams = tokens if n == 1 else [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
                if grams:
                    doc += self._ids_for_unique("w", grams).tolist()
            if self.config.char_ngrams and tokens:
                for word_ids in self._ids_for_unique("c", tokens):
                    doc += word_ids
            doc = [i for i in doc if i] or [0]  # no known token: the reserved id 0, as below
            ids += doc
            offsets.append(len(ids))
        return Encoded(np.array(ids, dtype=np.int64), np.array(offsets, dtype=np.int64))

    def encode_tokenized(self, words: list[list[str]] | pa.ListArray) -> Encoded:
        """Encode documents given as their token lists (what `tokenize` returns): the ids `encode`
        gives for the text, so an explanation can drop a token and re-encode exactly."""
        if not isinstance(words, pa.Array) and len(words) <= SMALL_BATCH:
            return self._encode_small([list(w) for w in words])
        if not isinstance(words, pa.Array):
            words = pa.array(words, pa.list_(pa.large_string()))
        n_docs = len(words)
        all_ids, all_parents = [], []
        for kind, tokens, parents in self._token_streams(words):
            if not len(tokens):
                continue
            encoded = pc.dictionary_encode(tokens)
            uniques = encoded.dictionary.to_pylist()
            idx = encoded.indices.to_numpy()
            table = self._ids_for_unique(kind, uniques)
            if isinstance(table, np.ndarray):
                ids = table[idx]
                all_ids.append(ids)
                all_parents.append(parents)
            else:
                lengths = np.array([len(x) for x in table], dtype=np.int64)
                flat_table = np.fromiter((i for x in table for i in x), dtype=np.int64,
                                         count=int(lengths.sum()))
                starts = np.concatenate([[0], np.cumsum(lengths)])
                occ_len = lengths[idx]
                occ_start = starts[idx]
                total = int(occ_len.sum())
                # Expand every occurrence into its run of char-gram ids, vectorized.
                run_starts = np.repeat(occ_start - np.concatenate([[0], np.cumsum(occ_len)[:-1]]), occ_len)
                gather = run_starts + np.arange(total)
                all_ids.append(flat_table[gather])
                all_parents.append(np.repeat(parents, occ_len))
        if all_ids:
            ids = np.concatenate(all_ids)
            parents = np.concatenate(all_parents)
            keep = ids != 0
            ids, parents = ids[keep], parents[keep]
            order = np.argsort(parents, kind="stable")
            ids, parents = ids[order], parents[order]
        else:
            ids = np.empty(0, np.int64)
            parents = np.empty(0, np.int64)
        counts = np.bincount(parents, minlength=n_docs) if n_docs else np.empty(0, np.int64)
        # Documents with no known token get the reserved id 0 so every bag is non-empty.
        empty = counts == 0
        if empty.any():
            ids = np.insert(ids, np.searchsorted(parents, np.flatnonzero(empty)), 0)
            counts[empty] = 1
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Encoded(ids.astype(np.int64), offsets)

    # -- labels --------------------------------------------------------------------------------
    def encode_labels(self, labels: pa.Array) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        values = labels.to_pylist()
        unknown = sorted({v for v in values if v not in index}, key=str)
        if unknown:
            raise InputError(f"labels {unknown[:5]} were not seen in the training split "
                             f"(known: {self.labels})")
        return np.array([index[v] for v in values], dtype=np.int64)

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "config": self.config.model_dump(mode="json"), "labels": self.labels,
                "vocabulary": self.vocabulary, "fitted_on": self.fitted_on}

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes | str) -> Featurizer:
        raw = json.loads(data)
        if raw.get("format") != FORMAT:
            raise InputError(f"featurizer format {raw.get('format')!r} is not supported (expected {FORMAT})")
        return cls(FeaturesConfig.model_validate(raw["config"]), raw["labels"], raw["vocabulary"],
                   raw.get("fitted_on", {}))


def token_counts(featurizer: Featurizer, texts: pa.Array) -> Counter[str]:
    """How often each vocabulary candidate ("w:<n-gram>", "c:<char n-gram>") occurs in `texts`.
    Counts of batches add up to the counts of their concatenation (documents are tokenized
    independently), so a fit can stream batches or run as a distributed aggregation."""
    counts: Counter[str] = Counter()
    for kind, tokens, _parents in featurizer._token_streams(featurizer._words(texts)):
        if not len(tokens):
            continue
        if kind == "w":
            for item in pc.value_counts(tokens).to_pylist():
                counts["w:" + item["values"]] += item["counts"]
        else:
            lo, hi = featurizer.config.char_ngrams
            for item in pc.value_counts(tokens).to_pylist():
                for g in _char_ngrams(item["values"], lo, hi):
                    counts["c:" + g] += item["counts"]
    return counts


def vocabulary_from_counts(counts: dict[str, int], config: FeaturesConfig) -> dict[str, int]:
    """Tokens seen at least min_freq times, most frequent first (ties by token), capped to the id space."""
    kept = [t for t, c in counts.items() if c >= config.min_freq]
    kept.sort(key=lambda t: (-counts[t], t))
    return {t: i + 1 for i, t in enumerate(kept[: config.num_buckets - 1])}


def featurizer_for(labels: set[str] | list[str], config: FeaturesConfig,
                   fitted_on: dict[str, Any] | None = None) -> Featurizer:
    """The featurizer for the training split's labels; vocabulary mode still needs its vocabulary."""
    ordered = sorted(set(labels), key=str)
    if len(ordered) < 2:
        raise InputError(f"the training split has {len(ordered)} label(s) {ordered}; a classifier needs two")
    return Featurizer(config, ordered, {}, fitted_on or {})


def fit(train_texts: pa.Array, train_labels: pa.Array, config: FeaturesConfig,
        fitted_on: dict[str, Any] | None = None) -> Featurizer:
    """Learn labels (and the vocabulary in vocabulary mode) from the training split only."""
    featurizer = featurizer_for(set(train_labels.to_pylist()), config, fitted_on)
    if config.kind == "vocabulary":
        featurizer.vocabulary = vocabulary_from_counts(token_counts(featurizer, train_texts), config)
    return featurizer


FEATURE_SCHEMA = pa.schema([("doc_id", pa.string()), ("label", pa.string()), ("label_id", pa.int64()),
                            ("source", pa.string()), ("chars", pa.int64()), ("ids", pa.list_(pa.int32()))])


def featurize_table(featurizer: Featurizer, table: pa.Table) -> pa.Table:
    texts = table.column("text").combine_chunks()
    encoded = featurizer.encode(texts)
    return pa.table({
        "doc_id": table.column("doc_id"),
        "label": table.column("label"),
        "label_id": pa.array(featurizer.encode_labels(table.column("label").combine_chunks())),
        "source": table.column("source"),
        "chars": pc.utf8_length(texts).cast(pa.int64()),
        "ids": encoded.as_arrow(),
    }, schema=FEATURE_SCHEMA)


SPLITS = ("train", "validation", "test")


def fit_and_encode(parts: dict[str, pa.Table], config: FeaturesConfig, fitted_on: dict[str, Any],
                   ) -> tuple[Featurizer, dict[str, pa.Table]]:
    """Fit on the train split only, then encode every split with that one featurizer (in memory:
    the executor streams the same functions over files)."""
    train = parts["train"]
    if train.num_rows == 0:
        raise empty_train_error(fitted_on)
    featurizer = fit(train.column("text").combine_chunks(), train.column("label").combine_chunks(), config,
                     fitted_on)
    return featurizer, {name: featurize_table(featurizer, parts[name]) for name in SPLITS}


def _where(fitted_on: dict[str, Any] | None) -> str:
    return f"dataset {fitted_on.get('dataset')}@{fitted_on.get('version')}: " if fitted_on else ""


def empty_train_error(fitted_on: dict[str, Any] | None) -> InputError:
    return InputError(f"{_where(fitted_on)}the training split is empty: nothing to fit the featurizer on")


def feature_stats(featurizer: Featurizer, sizes: dict[str, tuple[int, int]]) -> dict[str, float]:
    """sizes: split -> (rows, ids summed over its rows)."""
    stats: dict[str, float] = {"num_ids": float(featurizer.num_ids), "num_labels": float(len(featurizer.labels))}
    for name, (rows, ids) in sizes.items():
        stats[f"{name}_rows"] = float(rows)
        stats[f"{name}_mean_ids"] = ids / rows if rows else 0.0
    return stats
