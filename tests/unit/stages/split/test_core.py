"""The split: deterministic, stable as the dataset grows, proportional."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from components.dataset.schema import content_digests, doc_ids_from_digests
from components.stages.split.config import SplitConfig
from components.stages.split.core import assign, split_table


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
