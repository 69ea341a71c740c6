"""Training benchmarks: entrypoint vs a bare torch loop; DDP world sizes (search efficiency: search_efficiency.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _corpus(n: int, seed: int = 11, hard: bool = False, cues: int = 40) -> list[dict]:
    """Learnable synthetic reviews: the label depends on which of two word sets dominates.

    `hard`: one cue word (80% reliable) among fillers and 15% flipped labels, so that hyperparameters
    decide how close a model gets to the ~0.7 ceiling (what a search benchmark needs)."""
    rng = np.random.default_rng(seed)
    if hard:
        return _hard_corpus(n, rng, cues)
    pos = ["great", "excellent", "love", "superb", "wonderful", "enjoyed", "brilliant", "fantastic"]
    neg = ["awful", "terrible", "hate", "boring", "dreadful", "poor", "waste", "worst"]
    filler = ["the", "a", "movie", "plot", "actor", "scene", "story", "and", "of", "it", "was", "this", "film"]
    rows = []
    for i in range(n):
        label = i % 2
        strong, weak = (pos, neg) if label else (neg, pos)
        words = list(rng.choice(strong, 4)) + list(rng.choice(weak, 2)) + list(rng.choice(filler, 14))
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" r{i}", "label": "pos" if label else "neg"})
    return rows


def _hard_corpus(n: int, rng, count: int = 40) -> list[dict]:
    cues = [f"cue{i}" for i in range(count)]
    filler = [f"w{i}" for i in range(400)]
    rows = []
    for i in range(n):
        label = i % 2
        # Each cue leans one way: cue k favours label k % 2 with probability 0.65.
        k = int(rng.integers(0, count))
        if (k % 2 == label) != (rng.random() < 0.8):
            k = (k + 1) % count
        words = [cues[k], cues[k], *rng.choice(filler, 10)]
        rng.shuffle(words)
        shown = label if rng.random() > 0.15 else 1 - label
        rows.append({"text": " ".join(words) + f" r{i}", "label": "pos" if shown else "neg"})
    return rows


def _prepare(work: Path, n: int, hard: bool = False, cues: int = 40):
    from components.common.storage import FileStore
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.executor import ingest
    from components.stages.train.config import TrainingConfig

    tag = f"{n}{'-hard' if hard else ''}{f'-{cues}cues' if hard and cues != 40 else ''}"
    store = FileStore(str(work / f"train-store-{tag}"))
    src = work / f"train-corpus-{tag}.jsonl"
    if not src.exists():
        src.write_text("\n".join(json.dumps(r) for r in _corpus(n, hard=hard, cues=cues)))
    version = ingest([str(src)], "bench", store, SourceSettings(), CleaningConfig()).version
    return store, version, TrainingConfig()


def bench_throughput(work: Path, n: int = 100_000, epochs: int = 3, repeats: int = 5) -> dict:
    """docs/s per epoch: the full entrypoint vs a bare loop over the same tensors, same process."""
    import torch

    from components.stages.featurize.executor import prepare_features
    from components.stages.train.config import apply_params
    from components.stages.train.data import Bags
    from components.stages.train.entrypoint import run_training
    from components.stages.train.models import build_model

    store, version, cfg = _prepare(work, n)
    cfg = apply_params(cfg, {"epochs": epochs, "patience": epochs, "batch_size": 256, "embed_dim": 64})
    featurizer, tables = prepare_features(store, "bench", version, cfg.split.model_dump(mode="json"),
                                          cfg.features.model_dump(mode="json"))
    train = Bags.from_table(tables["train"])

    def bare_loop() -> float:
        """Batches materialized up front, nothing but forward/backward/step: docs/s over all epochs."""
        torch.manual_seed(0)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)  # what the entrypoint runs with (process-global)
        model = build_model("embedding_bag", featurizer.num_ids, 2, embed_dim=64, dropout=0.1)
        sparse = torch.optim.SparseAdam([model.embedding.weight], lr=0.01)
        dense = torch.optim.AdamW(model.classifier.parameters(), lr=0.01)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))
        batches = [train.batch(order[i:i + 256]) for i in range(0, len(train), 256)]
        started = time.perf_counter()
        for _ in range(epochs):
            for ids, offsets, labels in batches:
                loss = torch.nn.functional.cross_entropy(model(ids, offsets), labels)
                sparse.zero_grad()
                dense.zero_grad()
                loss.backward()
                sparse.step()
                dense.step()
        return epochs * len(train) / (time.perf_counter() - started)

    # Back-to-back pairs, median of the paired ratios: this machine's slow spells then hit both sides
    # of a pair alike, and one lucky or unlucky run cannot decide the figure.
    pairs = []
    for i in range(repeats):
        bare = bare_loop()
        record = run_training(store, "bench", version, cfg, f"bench-{int(time.time())}-{i}",
                              emit=lambda _l: None, progress=False)
        pairs.append((record["train_docs_per_s"], bare, record))
    ratios = sorted(entry / bare for entry, bare, _ in pairs)
    entry_rate, bare_rate, record = sorted(pairs, key=lambda p: p[0] / p[1])[len(pairs) // 2]
    return {"docs": len(train), "epochs": epochs, "pairs": repeats,
            "entrypoint_docs_per_s": round(entry_rate), "bare_loop_docs_per_s": round(bare_rate),
            "ratio": round(entry_rate / bare_rate, 3), "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "device": record["device"], "entrypoint_total_s": record["duration_s"],
            "test_accuracy": round(record["metrics"]["test"]["accuracy"], 4)}


def bench_world_sizes(work: Path, n: int = 20_000, epochs: int = 2, repeats: int = 2) -> dict:
    """docs/s per epoch at world size 1 vs 2 (torch DDP under torchrun, gloo on CPU, one thread per
    process), both launched the same way (`train_processes`), alternating, best of `repeats` each.
    Two models: a CNN, where compute dominates a step, and the default EmbeddingBag, where it does
    not (a step is a few microseconds of arithmetic; the all-reduce and Python overhead are the rest)."""
    from components.stages.train.config import apply_params
    from components.stages.train.launch import train_processes

    store, version, cfg = _prepare(work, n)
    models = {"cnn": {"family": "cnn", "embed_dim": 64, "channels": 128, "batch_size": 256},
              "embedding_bag": {"family": "embedding_bag", "embed_dim": 64, "batch_size": 64}}
    rows = []
    for model, params in models.items():
        rates: dict[int, list[float]] = {1: [], 2: []}
        devices = {}
        for i in range(repeats):
            for world_size in (1, 2):
                run_cfg = apply_params(cfg, {**params, "epochs": epochs, "patience": epochs, "threads": 1,
                                             "train.world_size": world_size})
                run_id = f"ws{world_size}-{model}-{time.time_ns()}-{i}"
                record = train_processes(store, "bench", version, run_cfg, run_id, emit=lambda _l: None)
                rates[world_size].append(record["train_docs_per_s"])
                devices[world_size] = record["distributed"]
                print(f"  {model} world size {world_size}: {record['train_docs_per_s']:,.0f} docs/s", file=sys.stderr,
                      flush=True)
        best = {ws: max(r) for ws, r in rates.items()}
        rows.append({"model": model, "docs": n, "epochs": epochs, "ws1_docs_per_s": round(best[1]),
                     "ws2_docs_per_s": round(best[2]), "speedup": round(best[2] / best[1], 2),
                     "backend": devices[2]["backend"], "device": "cuda" if devices[2]["device_count"] else "cpu"})
    return {"bench": "distributed", "targets": {"speedup_cnn_cpu": ">= 1.6"}, "results": rows}


if __name__ == "__main__":
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/work")
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"throughput": bench_throughput(work)}, indent=2))
