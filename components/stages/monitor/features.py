"""Per-request engineered features of logged texts, for input-drift monitoring.

Computed with the champion's own featurizer, so they describe what the model actually sees:
  descriptors   chars, words, mean word length, upper/digit/non-ASCII shares, URL count
  tokens        feature ids per text (after n-grams, capped at max_tokens)
  oov_rate      share of a text's feature ids never seen in the reference sample (vocabulary
                mode: the unknown id; hashing mode: buckets the reference never filled)
and, over the whole window, the histogram of feature ids folded into `hash_bins` buckets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from components.stages.report.core import NUMERIC as DESCRIPTORS
from components.stages.report.core import descriptors

NUMERICAL = [*DESCRIPTORS, "tokens", "oov_rate"]


def encode(featurizer, texts: list[str]):
    return featurizer.encode(pa.array(texts, pa.large_string()))


def known_ids(featurizer, encoded) -> np.ndarray:
    seen = np.zeros(featurizer.num_ids, dtype=bool)
    seen[encoded.ids] = True
    seen[0] = False  # id 0 is "nothing known" in both modes
    return seen


def text_features(featurizer, texts: list[str], seen: np.ndarray | None = None, encoded=None,
                  hash_bins: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(per-text numerical features, feature-id histogram over hash_bins, the `seen` id mask)."""
    encoded = encoded if encoded is not None else encode(featurizer, texts)
    table = pa.table({"text": pa.array(texts, pa.large_string()), "label": pa.nulls(len(texts), pa.string()),
                      "source": pa.nulls(len(texts), pa.string())})
    desc = descriptors(table)
    features: dict[str, np.ndarray] = {c: desc.column(c).to_numpy(zero_copy_only=False) for c in DESCRIPTORS}
    counts = np.diff(encoded.offsets)
    features["tokens"] = counts.astype(np.float64)
    if seen is None:
        seen = known_ids(featurizer, encoded)
    unknown = ~seen[encoded.ids]
    per_doc_unknown = np.add.reduceat(unknown.astype(np.float64), encoded.offsets[:-1]) if len(texts) else \
        np.empty(0)
    features["oov_rate"] = per_doc_unknown / np.maximum(counts, 1)
    histogram = np.bincount(encoded.ids % hash_bins, minlength=hash_bins).astype(np.float64)
    return features, histogram, seen


def summary(features: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: {"mean": float(np.mean(v)), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
            for name, v in features.items() if len(v)}
