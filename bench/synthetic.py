"""Deterministic synthetic text corpora for benchmarks (vectorized: 10M docs in seconds)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_WORD_LIST = """
the a of to and in is it you that he was for on are with as his they be at one have this from or
had by hot word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large spell add
even land here must big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father
"""
WORDS = tuple(_WORD_LIST.split())


def synthetic_batch(start: int, n: int, seed: int = 7, words_per_doc: int = 12) -> pa.Table:
    """Rows start..start+n: unique texts (a serial number ends each) with a learnable label."""
    rng = np.random.default_rng([seed, start])
    vocab = pa.array(WORDS)
    idx = rng.integers(0, len(WORDS), size=(words_per_doc, n))
    columns = [vocab.take(pa.array(idx[i])) for i in range(words_per_doc)]
    serial = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
    text = pc.binary_join_element_wise(*columns, serial, " ")
    label = np.where(idx[0] % 2 == 0, "ham", "spam")
    return pa.table({"text": text, "label": pa.array(label)})


def write_corpus(folder: str, total: int, shard_rows: int = 1_000_000) -> list[str]:
    """Parquet shards of `total` rows (reused when already there)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for shard, start in enumerate(range(0, total, shard_rows)):
        path = os.path.join(folder, f"shard-{shard:03d}.parquet")
        paths.append(path)
        if os.path.exists(path):
            continue
        rows = min(shard_rows, total - start)
        tmp = path + ".tmp"
        with pq.ParquetWriter(tmp, pa.schema([("text", pa.string()), ("label", pa.string())]),
                              compression="zstd") as writer:
            for sub in range(start, start + rows, 250_000):
                writer.write_table(synthetic_batch(sub, min(250_000, start + rows - sub)),
                                   row_group_size=125_000)
        os.replace(tmp, path)
    return paths
