"""A small, learnable labelled corpus for fast training tests."""

from __future__ import annotations

import json
import random

from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from components.stages.train.config import TrainingConfig, apply_params

SPAM_WORDS = ["free", "winner", "prize", "cash", "offer", "click", "urgent", "credit", "viagra", "lottery"]
HAM_WORDS = ["meeting", "report", "project", "lunch", "schedule", "review", "notes", "team", "draft", "agenda"]
COMMON = ["the", "a", "to", "and", "of", "in", "is", "for", "on", "with", "this", "that"]


def corpus(n: int = 600, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "spam" if i % 2 else "ham"
        words = SPAM_WORDS if label == "spam" else HAM_WORDS
        # Some overlap so the task is learnable but not trivial.
        tokens = [rng.choice(words if rng.random() < 0.7 else SPAM_WORDS + HAM_WORDS) for _ in range(6)]
        tokens += [rng.choice(COMMON) for _ in range(6)]
        rng.shuffle(tokens)
        rows.append({"text": " ".join(tokens) + f" id{i}", "label": label})
    return rows


def ingest_corpus(tmp_path, store, dataset: str = "toy", n: int = 600) -> str:
    path = tmp_path / f"{dataset}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in corpus(n)))
    return ingest([str(path)], dataset, store, SourceSettings(), CleaningConfig()).version


def train_and_register(store, version: str, run_id: str, model: str = "toy-model", alias: str | None = "candidate",
                       **train) -> dict:
    """Train a small model on the toy dataset and register it; returns the model card."""
    from components.stages.registry.store import register_run
    from components.stages.train.entrypoint import run_training

    record = run_training(store, "toy", version, small_config(**train), run_id, emit=lambda _l: None, progress=False)
    return register_run(store, model, record, alias=alias)


# Two random trials with median stopping over the three kinds of parameter (double, discrete, and a
# categorical of lists): the smallest search that still exercises every conversion to a trial.
TWO_TRIAL_SEARCH = {"algorithm": "random", "max_trials": 2, "parallel_trials": 1,
                    "early_stopping": {"algorithm": "medianstop"},
                    "parameters": [{"name": "lr", "type": "double", "min": 0.01, "max": 0.05},
                                   {"name": "embed_dim", "type": "discrete", "values": [8, 16]},
                                   {"name": "features.word_ngrams", "type": "categorical",
                                    "values": [[1, 1], [1, 2]]}]}


def small_config(**train) -> TrainingConfig:
    params = {"embed_dim": 16, "epochs": 4, "batch_size": 32, "lr": 0.05, "patience": 3, **train}
    cfg = apply_params(TrainingConfig(), params)
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"num_buckets": 4096})})


def held_out_split(store, dataset: str, version: str, split: dict | None = None):
    """The test split and its description, as the split step's artifact would carry them."""
    from components.dataset import versioning as v
    from components.stages.split.config import SplitConfig
    from components.stages.split.core import split_table

    cfg = SplitConfig.model_validate(split or {})
    ref = v.resolve(store, dataset, version)
    table = split_table(v.read_table(store, ref, columns=["doc_id", "text", "label", "source"]), cfg)["test"]
    return table, {"dataset": dataset, "version": ref.version, "split": cfg.model_dump(mode="json")}
