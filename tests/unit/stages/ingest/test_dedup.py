"""Dedup: the spilling key index and its budget, which never changes the version."""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.common.config import PROJECT_ROOT
from components.common.storage import FileStore
from components.stages.ingest.config import SourceSettings
from components.stages.ingest.dedup import KeyIndex, stable_key_order
from components.stages.ingest.executor import ingest
from tests.support.malformed import repeating_corpus, write_mail_folder, write_tabular_folder
from tests.support.version_outcome import outcome


@pytest.mark.parametrize(("n", "distinct"), [(0, 1), (1, 1), (2, 1), (50, 3), (20_000, 2**63), (20_000, 5_000)])
def test_key_order_is_numpys_stable_argsort(n, distinct):
    """The first occurrence of a key must come first among its equals: that is the row dedup keeps."""
    rng = np.random.default_rng(n + distinct)
    keys = rng.integers(0, distinct, n, dtype=np.uint64)
    if n > 10:  # duplicates also among keys drawn from the whole range
        keys[rng.integers(0, n, n // 10)] = keys[rng.integers(0, n, n // 10)]
    assert np.array_equal(stable_key_order(keys), np.argsort(keys, kind="stable"))


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


# --- bounded-memory dedup: any budget gives the in-RAM answer --------------------------------------


@pytest.mark.parametrize("budget", [7, 64])
def test_any_dedup_budget_gives_the_in_memory_version(tmp_path, cleaning, budget):
    """Windows of `budget` keys spill to disk; duplicates spanning windows, and repeats of a parent
    that itself spilled, are found after the last batch. Same id, counts, rows and quarantine."""
    src = tmp_path / "src"
    src.mkdir()
    repeating_corpus(src / "first.csv", 300, seed=1)
    outcomes = {}
    for name, keys in (("ram", 10**9), ("spill", budget)):
        store = FileStore(str(tmp_path / name))
        first = ingest([str(src / "first.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50,
                       part_rows=40, dedup_budget_keys=keys)
        repeating_corpus(src / "second.csv", 300, seed=2)  # overlaps the first: parent duplicates
        second = ingest([str(src / "second.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50,
                        part_rows=40, dedup_budget_keys=keys)
        (src / "second.csv").unlink()
        outcomes[name] = (outcome(store, first), outcome(store, second))
    ram, spill = outcomes["ram"], outcomes["spill"]
    assert ram[1]["reasons"]["duplicate_of_parent"] > 0 and ram[0]["reasons"]["duplicate"] > 0
    assert spill == ram
    stripped = [q for q in spill[0]["quarantine"] if q[2].startswith(b" ")]
    assert stripped, "a repeat with its own whitespace keeps its raw bytes in the quarantine"


@pytest.mark.parametrize("folder", ["mail", "tab"])
def test_dedup_budget_identity_on_the_malformed_set(tmp_path, cleaning, folder):
    (write_mail_folder if folder == "mail" else write_tabular_folder)(tmp_path / folder)
    runs = [ingest([str(tmp_path / folder)], "m", FileStore(str(tmp_path / f"s{keys}")), SourceSettings(),
                   cleaning, batch_rows=3, dedup_budget_keys=keys) for keys in (10**9, 2)]
    assert outcome(FileStore(str(tmp_path / "s1000000000")), runs[0]) == \
        outcome(FileStore(str(tmp_path / "s2")), runs[1])


def test_dedup_budget_identity_on_the_bundled_corpus(tmp_path):
    from components.composition.config import load_config

    cfg = load_config()
    sources = [str(PROJECT_ROOT / p) for p in cfg.data.reference]
    if not all(os.path.isdir(p) for p in sources):
        pytest.skip("bundled corpus not fetched (make data)")
    results = {keys: ingest(sources, "sa", FileStore(str(tmp_path / str(keys))), cfg.data.source, cfg.cleaning,
                            dedup_budget_keys=keys) for keys in (10**9, 500)}
    ram, spill = (outcome(FileStore(str(tmp_path / str(k))), results[k]) for k in (10**9, 500))
    assert ram["reasons"].get("duplicate", 0) > 0  # the corpus has real repeats
    assert spill == ram
