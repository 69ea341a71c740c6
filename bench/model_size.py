"""Model size and the unseen-row fix, per bundled corpus, from one training run each: the whole
training module as runs wrote it before (every row of the hashed table in fp32, rows no training
document used left at their random initial values) against the compact served form (the rows
training used, the embedding-bag classifier folded in, unseen ids neutral). Accuracy on the test
split and on the production collection (the drift split the loop serves)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

from components.common.storage import Store, open_store
from components.composition.config import ConveyorConfig, load_config
from components.stages.featurize.core import Featurizer, featurize_table
from components.stages.featurize.executor import prepare_features
from components.stages.ingest.executor import ingest, read_clean
from components.stages.train.config import TrainingConfig
from components.stages.train.core import FitResult, classification_metrics, fit, predict_logits, state_dict_bytes
from components.stages.train.data import Bags
from components.stages.train.models import served_model
from pipelines.local_run import resolve_sources

CORPORA = {"spamassassin": "configs/spamassassin.yaml", "tweets": "configs/tweets.yaml"}


def _accuracy(model: torch.nn.Module, bags: Bags, classes: int) -> float:
    logits = predict_logits(model, bags, torch.device("cpu"))
    return round(100 * classification_metrics(logits, bags.labels, classes)["accuracy"], 2)


@dataclass
class _Trained:
    """One corpus ingested, featurized and trained once, keeping the whole training module too."""

    cfg: ConveyorConfig
    store: Store
    version: str
    training: TrainingConfig
    featurizer: Featurizer
    bags: dict[str, Bags]
    result: FitResult
    seconds: float

    @property
    def module_state(self) -> dict[str, torch.Tensor]:
        """The whole training module as runs registered it before the compact form."""
        return {k: v for k, v in self.result.extra["module_state"].items() if k != "seen"}


def _train(work: Path, name: str) -> _Trained:
    cfg = load_config(CORPORA[name])
    store = open_store(f"file://{work / 'model-size'}")
    version = ingest(resolve_sources(cfg.data.reference), name, store, cfg.data.settings_for("reference"),
                     cfg.cleaning).version
    training = TrainingConfig.of(cfg)
    params = training.params()
    featurizer, tables = prepare_features(store, name, version, params["split"], params["features"])
    bags = {k: Bags.from_table(t) for k, t in tables.items()}
    started = time.perf_counter()
    result = fit(bags["train"], bags["validation"], featurizer.num_ids, len(featurizer.labels), training.train,
                 emit=lambda _l: None, progress=False, keep_module_state=True)
    return _Trained(cfg, store, version, training, featurizer, bags, result, time.perf_counter() - started)


def bench_corpus(work: Path, name: str) -> dict:
    trained = _train(work, name)
    cfg, training, featurizer, bags, result = (trained.cfg, trained.training, trained.featurizer, trained.bags,
                                               trained.result)
    production, _ = read_clean(resolve_sources(cfg.data.production), cfg.data.settings_for("production"),
                               cfg.cleaning)
    production = production.filter(pc.is_in(production.column("label"), pa.array(featurizer.labels)))
    bags["production"] = Bags.from_table(featurize_table(featurizer, production))
    classes = len(featurizer.labels)
    # The old form loads as it answered then: every row, trained or not (served_model's legacy path).
    before = served_model(training.train.model_dump(), featurizer.num_ids, classes, trained.module_state)
    after = served_model(training.train.model_dump(), featurizer.num_ids, classes, result.state_dict)
    before_bytes = state_dict_bytes(trained.module_state)
    after_bytes = state_dict_bytes(result.state_dict)
    return {
        "corpus": name, "num_ids": featurizer.num_ids, "embed_dim": training.train.embed_dim,
        "rows_used": int(result.state_dict["rows"].numel()), "train_seconds": round(trained.seconds, 1),
        "before": {"mib": round(len(before_bytes) / 2**20, 2), "test": _accuracy(before, bags["test"], classes),
                   "production": _accuracy(before, bags["production"], classes)},
        "after": {"mib": round(len(after_bytes) / 2**20, 2), "test": _accuracy(after, bags["test"], classes),
                  "production": _accuracy(after, bags["production"], classes)},
        "rows": {"test": len(bags["test"]), "production": len(bags["production"])},
    }


def bench_model_size(work: Path) -> dict:
    results = [bench_corpus(work, name) for name in CORPORA]
    return {"bench": "model_size", "targets": {"mib": "<= 8", "test_points": ">= -0.3"}, "results": results}


def _tree_rss_mib(pid: int) -> tuple[float, int]:
    """Resident memory of a process and its descendants (MiB), and how many processes."""
    pids, frontier = [pid], [pid]
    while frontier:
        children = []
        for p in frontier:
            with contextlib.suppress(OSError):
                children += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        pids += children
        frontier = children
    total = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024, len(pids)


def bench_predictor_footprint(work: Path, workers: tuple[int, ...] = (1, 2), repeats: int = 2) -> dict:
    """`conveyor serve` start-up (process start to ready) and resident memory per worker, the
    SpamAssassin model in both forms from one training run (legacy: the whole training module, as
    registered before; compact: what runs register now), alternating, best of `repeats`."""
    from components.stages.registry.store import register
    from components.stages.serve.infra import ServerProcess

    trained = _train(work, "spamassassin")
    store, featurizer = trained.store, trained.featurizer
    forms = {"legacy (whole table)": trained.module_state, "compact": trained.result.state_dict}
    meta = {"params": trained.training.params(), "dataset": {"name": "spamassassin", "version": trained.version},
            "metrics": {},
            "labels": featurizer.labels, "run_id": "bench", "run_key": "bench"}
    versions = {form: register(store, "size-bench", state_dict_bytes(state), featurizer.dumps(), meta)["version"]
                for form, state in forms.items()}
    rows = []
    for n in workers:
        for form, model_version in versions.items():
            best_start, best_rss = float("inf"), float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                with ServerProcess(f"size-bench@{model_version}", store.uri, name="m",
                                   extra=["--workers", str(n)]) as server:
                    ready = time.perf_counter() - started
                    time.sleep(1.0)  # let every worker finish loading
                    rss, processes = _tree_rss_mib(server.process.pid)
                best_start, best_rss = min(best_start, ready), min(best_rss, rss)
            rows.append({"form": form, "workers": n, "startup_s": round(best_start, 2),
                         "rss_mib": round(best_rss, 1), "rss_mib_per_worker": round(best_rss / n, 1),
                         "processes": processes})
    return {"bench": "predictor_footprint", "results": rows}
