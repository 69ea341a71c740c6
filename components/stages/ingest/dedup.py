"""Exact first-occurrence dedup of 64-bit content keys in a fixed amount of RAM.

Phase 1 (streaming, per batch): keys are checked against an in-memory *window* holding at most
`budget` keys, the most recent accepted rows. When the window is full it is written to local disk
as a sorted run (each key with its candidate row number) and a new window starts, so a duplicate
whose first occurrence lies in an earlier window is not caught yet. The parent version's keys stay
in RAM when they fit the budget; otherwise they are written as sorted runs too.

Phase 2 (`resolve`): the runs are read back one key range at a time. Keys are SHA-256 prefixes, so
their top byte splits them evenly into 256 ranges and RAM holds about 1/256 of all keys at once.
Within a range, the earliest candidate row of each key keeps it and later rows are `duplicate`;
rows whose key the parent has are `duplicate_of_parent`, exactly as if every key had been in RAM.
The verdicts go to a one-byte-per-row file on disk, which the executor applies to its parts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PARTITIONS = 256
KEEP, DUPLICATE, DUPLICATE_OF_PARENT = 0, 1, 2
DEFAULT_BUDGET_KEYS = 1_000_000  # 8 MiB of keys; the window peaks at ~6x that while it spills


class KeyIndex:
    """A growing set of 64-bit keys with vectorized membership tests, in bounded memory.

    Sorted runs merged like a log-structured tree (runs of similar size are merged), so inserts
    are amortized O(log n) and lookups are a `searchsorted` per run: 8 bytes per key, where a
    Python set would need ~60.
    """

    def __init__(self, keys: np.ndarray | None = None):
        self.runs: list[np.ndarray] = []
        if keys is not None and len(keys):
            self.runs.append(np.unique(keys))

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self.runs:
            found |= _isin_sorted(keys, run)
        return found

    def add(self, keys: np.ndarray) -> None:
        self.add_sorted(np.sort(keys))

    def add_sorted(self, run: np.ndarray) -> None:
        if not len(run):
            return
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = np.concatenate([self.runs.pop(), run])
            run.sort(kind="stable")
        self.runs.append(run)

    def all_keys(self) -> np.ndarray:
        return np.sort(np.concatenate(self.runs)) if self.runs else np.empty(0, dtype=np.uint64)


def _isin_sorted(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(keys), dtype=bool)
    pos = np.searchsorted(sorted_set, keys)
    pos[pos == len(sorted_set)] = 0
    return sorted_set[pos] == keys


@dataclass(frozen=True)
class _Run:
    """Sorted keys and their values (row numbers) in two flat files, with partition offsets."""
    keys_path: str
    values_path: str
    offsets: np.ndarray  # PARTITIONS + 1 row offsets, one range per top byte

    def read(self, partition: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = int(self.offsets[partition]), int(self.offsets[partition + 1])
        count = stop - start
        keys = np.fromfile(self.keys_path, dtype=np.uint64, count=count, offset=start * 8)
        values = np.fromfile(self.values_path, dtype=np.int64, count=count, offset=start * 8)
        return keys, values


def stable_key_order(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable"), about 6x faster on 64-bit keys where few are equal (dedup keys:
    equal only for duplicates). numpy's unstable sort is SIMD; its stable one is a merge sort. Runs
    of equal keys are then put back in position order, which is what stable means."""
    order = np.argsort(keys)
    if len(keys) < 2:
        return order
    ordered = keys[order]
    equal = ordered[1:] == ordered[:-1]
    if not equal.any():
        return order
    tied = np.zeros(len(keys), dtype=bool)
    tied[1:] |= equal
    tied[:-1] |= equal
    at = np.flatnonzero(tied)  # contiguous runs, in key order: a stable sort of just them fits back
    order[at] = order[at][np.lexsort((order[at], ordered[at]))]
    return order


class _RunWriter:
    def __init__(self, folder: str, stem: str):
        self.folder, self.stem = folder, stem
        self.runs: list[_Run] = []

    def write(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Sort (keys, values) by key and write them as one run."""
        order = stable_key_order(keys)
        keys, values = keys[order], values[order].astype(np.int64)
        base = os.path.join(self.folder, f"{self.stem}-{len(self.runs):05d}")
        keys.tofile(base + ".keys")
        values.tofile(base + ".values")
        offsets = np.searchsorted(keys >> np.uint64(56), np.arange(PARTITIONS + 1, dtype=np.uint64))
        self.runs.append(_Run(base + ".keys", base + ".values", offsets))

    def read(self, partition: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.runs:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        pieces = [run.read(partition) for run in self.runs]
        return np.concatenate([k for k, _ in pieces]), np.concatenate([v for _, v in pieces])


class ParentKeys:
    """The parent version's keys: a KeyIndex in RAM when they fit the budget, else runs on disk
    (then `contains` answers no and phase 2 finds them)."""

    def __init__(self, folder: str, chunks: Iterable[np.ndarray], total: int, budget: int):
        self.on_disk = _RunWriter(folder, "parent")
        self.memory: KeyIndex | None = None
        if total <= budget:
            arrays = list(chunks)
            self.memory = KeyIndex(np.concatenate(arrays) if arrays else None)
        else:
            for keys in chunks:
                self.on_disk.write(keys, np.full(len(keys), -1, np.int64))

    @property
    def spilled(self) -> bool:
        return self.memory is None

    def contains(self, sorted_keys: np.ndarray) -> np.ndarray:
        if self.memory is None:
            return np.zeros(len(sorted_keys), dtype=bool)
        return self.memory.contains(sorted_keys)


class WindowIndex:
    """Accepted keys so far: the newest at most `budget` in RAM, older ones in sorted runs on disk.

    Candidate row numbers are implicit: keys are added in row order, so the i-th key added is
    candidate row i.
    """

    def __init__(self, folder: str, budget: int):
        self.budget = budget
        self.window = KeyIndex()
        self.runs = _RunWriter(folder, "window")
        self.repeats = _RunWriter(folder, "repeat")
        self._in_order: list[np.ndarray] = []
        self._window_start = 0
        self.added = 0
        self._repeat_keys: list[np.ndarray] = []
        self._repeat_rows: list[np.ndarray] = []
        self._repeat_count = 0

    def contains(self, sorted_keys: np.ndarray) -> np.ndarray:
        return self.window.contains(sorted_keys)

    def add(self, keys_in_row_order: np.ndarray, sorted_keys: np.ndarray) -> None:
        self.window.add_sorted(sorted_keys)
        self._in_order.append(keys_in_row_order)
        self.added += len(keys_in_row_order)
        if len(self.window) >= self.budget:
            self.spill()

    def note_repeats(self, keys: np.ndarray, quarantine_rows: np.ndarray) -> None:
        """In-window duplicates (already quarantined as `duplicate`), kept only while the parent is
        on disk: phase 2 relabels those whose key the parent has as `duplicate_of_parent`."""
        if not len(keys):
            return
        self._repeat_keys.append(keys)
        self._repeat_rows.append(quarantine_rows)
        self._repeat_count += len(keys)
        if self._repeat_count >= self.budget:
            self._flush_repeats()

    def spill(self) -> None:
        if self._in_order:
            keys = np.concatenate(self._in_order)
            self.runs.write(keys, np.arange(self._window_start, self._window_start + len(keys)))
        self.window = KeyIndex()
        self._in_order = []
        self._window_start = self.added

    def _flush_repeats(self) -> None:
        if self._repeat_keys:
            self.repeats.write(np.concatenate(self._repeat_keys), np.concatenate(self._repeat_rows))
        self._repeat_keys, self._repeat_rows, self._repeat_count = [], [], 0

    @property
    def spilled(self) -> bool:
        return bool(self.runs.runs)


@dataclass(frozen=True)
class Verdicts:
    """Phase 2's answer: per-row verdict files (one byte per row), or None where all rows keep."""
    candidates: str | None  # KEEP / DUPLICATE / DUPLICATE_OF_PARENT per accepted candidate row
    quarantine: str | None  # 1 where a quarantined `duplicate` becomes `duplicate_of_parent`
    moved: int = 0
    relabelled: int = 0

    def candidate_flags(self, start: int, stop: int) -> np.ndarray:
        if self.candidates is None:
            return np.zeros(stop - start, np.uint8)
        return np.fromfile(self.candidates, dtype=np.uint8, count=stop - start, offset=start)

    def quarantine_flags(self, start: int, stop: int) -> np.ndarray:
        if self.quarantine is None:
            return np.zeros(stop - start, np.uint8)
        return np.fromfile(self.quarantine, dtype=np.uint8, count=stop - start, offset=start)


def resolve(folder: str, window: WindowIndex, parent: ParentKeys, quarantined_rows: int) -> Verdicts:
    """Phase 2. Nothing to do (and nothing read) when no window spilled and the parent fit in RAM:
    phase 1 was then exact on its own."""
    if not window.spilled and not parent.spilled:
        return Verdicts(None, None)
    window.spill()
    window._flush_repeats()
    candidates = _zeros_file(os.path.join(folder, "candidate-verdicts"), window.added)
    relabel = _zeros_file(os.path.join(folder, "quarantine-verdicts"), quarantined_rows) \
        if window.repeats.runs else None
    moved = relabelled = 0
    for p in range(PARTITIONS):
        keys, rows = window.runs.read(p)
        parent_keys = np.sort(parent.on_disk.read(p)[0]) if parent.spilled else None
        if len(keys):
            order = np.lexsort((rows, keys))  # by key, then row: the first row of a key keeps it
            keys, rows = keys[order], rows[order]
            verdict = np.zeros(len(keys), np.uint8)
            verdict[1:][keys[1:] == keys[:-1]] = DUPLICATE
            if parent_keys is not None:
                verdict[_isin_sorted(keys, parent_keys)] = DUPLICATE_OF_PARENT
            hit = np.flatnonzero(verdict)
            if len(hit):
                _set(candidates, rows[hit], verdict[hit])
                moved += len(hit)
        if relabel is not None and parent_keys is not None:
            repeat_keys, quarantine_rows = window.repeats.read(p)
            hit = quarantine_rows[_isin_sorted(repeat_keys, parent_keys)]
            if len(hit):
                _set(relabel, hit, np.ones(len(hit), np.uint8))
                relabelled += len(hit)
    return Verdicts(candidates if moved else None, relabel if relabelled else None, moved, relabelled)


def _zeros_file(path: str, size: int) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)  # sparse: zeros cost no disk until written
    return path


def _set(path: str, rows: np.ndarray, values: np.ndarray) -> None:
    """Write `values` at byte offsets `rows`. A short-lived memmap: once it is closed its pages
    belong to the page cache, not to this process's resident set."""
    if not len(rows):
        return
    flags = np.memmap(path, dtype=np.uint8, mode="r+")
    flags[rows] = values
    flags.flush()
    del flags
