"""The model registry: versions, aliases, and the tamper check on load."""

from __future__ import annotations

import pytest

from components.common.errors import IntegrityError
from components.stages.registry import store as registry
from components.stages.train.entrypoint import run_training
from tests.support.training_data import ingest_corpus, small_config


def test_registry_versions_aliases_and_tamper_check(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(), "reg-1", emit=lambda _l: None, progress=False)
    card = registry.register_run(file_store, "toy-model", record, alias="candidate")
    again = registry.register_run(file_store, "toy-model", record, alias="candidate")
    assert card["version"] == again["version"]  # immutable and content-addressed
    for key in ("metrics", "params", "dataset", "run_key", "files"):
        assert key in card
    registry.set_alias(file_store, "toy-model", "champion", card["version"])
    assert registry.aliases(file_store, "toy-model") == {"candidate": card["version"], "production": card["version"]}

    loaded = registry.load(file_store, "toy-model", "champion")
    preds = loaded.predict_proba(["free cash prize click now", "project meeting notes agenda"]).argmax(1).tolist()
    assert [loaded.featurizer.labels[i] for i in preds] == ["spam", "ham"]

    key = f"models/toy-model/{card['version']}/weights.pt"
    data = bytearray(file_store.read_bytes(key))
    data[-20] ^= 0xFF
    file_store.write_bytes(key, bytes(data))
    with pytest.raises(IntegrityError, match="refusing a modified model file"):
        registry.load(file_store, "toy-model", card["version"])
