"""Dataset identity: doc ids are sha256 prefixes of the content, keys round-trip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from components.dataset.schema import content_digests, doc_ids_from_digests, keys_from_digests, keys_from_doc_ids


def test_doc_ids_are_sha256_prefixes_and_keys_round_trip():
    import hashlib

    texts = pa.array(["alpha", "beta", "gamma ☃"])
    digests = content_digests(texts)
    ids = doc_ids_from_digests(digests).to_pylist()
    assert ids == [hashlib.sha256(t.encode()).hexdigest()[:32] for t in texts.to_pylist()]
    keys = keys_from_digests(digests)
    assert keys.tolist() == [int(i[:16], 16) for i in ids]
    assert np.array_equal(keys_from_doc_ids(pa.array(ids)), keys)
