"""Model size and the unseen-row fix, per bundled corpus, from one training run each: the whole
training module as runs wrote it before (every row of the hashed table in fp32, rows no training
document used left at their random initial values) against the compact served form (the rows
training used, the embedding-bag classifier folded in, unseen ids neutral). Accuracy on the test
split and on the production collection (the drift split the loop serves)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

from components.common.storage import open_store
from components.config import load_config
from components.featurize.core import featurize_table
from components.featurize.executor import prepare_features
from components.ingest.executor import ingest, read_clean
from components.train.config import TrainingConfig
from components.train.core import classification_metrics, fit, predict_logits, state_dict_bytes
from components.train.data import Bags
from components.train.models import build_from_params, served_model
from pipelines.local_run import resolve_sources

CORPORA = {"spamassassin": "configs/spamassassin.yaml", "tweets": "configs/tweets.yaml"}


def _accuracy(model: torch.nn.Module, bags: Bags, classes: int) -> float:
    logits = predict_logits(model, bags, torch.device("cpu"))
    return round(100 * classification_metrics(logits, bags.labels, classes)["accuracy"], 2)


def bench_corpus(work: Path, name: str, config: str) -> dict:
    cfg = load_config(config)
    store = open_store(f"file://{work / 'model-size'}")
    version = ingest(resolve_sources(cfg.data.reference), name, store, cfg.data.settings_for("reference"),
                     cfg.cleaning).version
    training = TrainingConfig.of(cfg)
    params = training.params()
    featurizer, tables = prepare_features(store, name, version, params["split"], params["features"])
    bags = {k: Bags.from_table(t) for k, t in tables.items()}
    production, _ = read_clean(resolve_sources(cfg.data.production), cfg.data.settings_for("production"),
                               cfg.cleaning)
    production = production.filter(pc.is_in(production.column("label"), pa.array(featurizer.labels)))
    bags["production"] = Bags.from_table(featurize_table(featurizer, production))
    classes = len(featurizer.labels)
    started = time.perf_counter()
    result = fit(bags["train"], bags["validation"], featurizer.num_ids, classes, training.train,
                 emit=lambda _l: None, progress=False, keep_module_state=True)
    seconds = time.perf_counter() - started

    before = build_from_params(training.train.model_dump(), featurizer.num_ids, classes)
    before.load_state_dict(result.extra["module_state"])
    before.seen.fill_(True)  # as before: every row answers, trained or not
    before.eval()
    after = served_model(training.train.model_dump(), featurizer.num_ids, classes, result.state_dict)
    before_bytes = state_dict_bytes({k: v for k, v in result.extra["module_state"].items() if k != "seen"})
    after_bytes = state_dict_bytes(result.state_dict)
    loaded = torch.load(io.BytesIO(after_bytes), weights_only=True)
    return {
        "corpus": name, "num_ids": featurizer.num_ids, "embed_dim": training.train.embed_dim,
        "rows_used": int(loaded["rows"].numel()), "train_seconds": round(seconds, 1),
        "before": {"mib": round(len(before_bytes) / 2**20, 2), "test": _accuracy(before, bags["test"], classes),
                   "production": _accuracy(before, bags["production"], classes)},
        "after": {"mib": round(len(after_bytes) / 2**20, 2), "test": _accuracy(after, bags["test"], classes),
                  "production": _accuracy(after, bags["production"], classes)},
        "rows": {"test": len(bags["test"]), "production": len(bags["production"])},
    }


def bench_model_size(work: Path) -> dict:
    results = [bench_corpus(work, name, config) for name, config in CORPORA.items()]
    return {"bench": "model_size", "targets": {"mib": "<= 8", "test_points": ">= -0.3"}, "results": results}
