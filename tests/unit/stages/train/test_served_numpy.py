"""The embedding_bag family served without torch: weights.pt read as torch.load reads it, scored as
the torch-loaded form scores, and a pickle that asks for anything else is refused unrun."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from components.common.config import PROJECT_ROOT
from components.common.errors import IntegrityError
from components.stages.registry import store as registry
from components.stages.train.config import TrainParams
from components.stages.train.entrypoint import run_training
from components.stages.train.models import build_from_params, export_state, mark_seen, served_model
from components.stages.train.served_numpy import FoldedBagScorer, UnsupportedState, read_state
from tests.support.training_data import ingest_corpus, small_config


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_read_state_gives_what_torch_load_gives():
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    state = {
        "float32": torch.randn(7, 3), "float64": base, "float16": torch.randn(5).half(),
        "int64": torch.arange(-4, 4), "int32": torch.tensor([1, 5, 7], dtype=torch.int32),
        "int16": torch.tensor([-3, 3], dtype=torch.int16), "int8": torch.tensor([-1], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5), "empty": torch.empty(0, 4),
        # views that share one storage, at an offset and with strides: saved as the storage plus a view
        "transposed": base.t(), "offset_slice": base[2:5, 3:9], "every_other": base[::2, 1::3],
    }
    loaded = read_state(_saved(state))
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.numpy().dtype, name
        assert np.array_equal(loaded[name], tensor.numpy()), name
    assert not np.shares_memory(loaded["transposed"], loaded["float64"])  # copies: one cannot write into another

    module_state = read_state(_saved(OrderedDict(build_from_params(TrainParams().model_dump(), 50, 2).state_dict())))
    assert "embedding.weight" in module_state  # a module's state_dict (an OrderedDict) reads too


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _with_pickle(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
    return buffer.getvalue()


@pytest.mark.parametrize("payload", [
    pickle.dumps({"rows": _Evil()}, protocol=2),  # builtins.print: a global it does not know
    pickle.dumps({"table": np.zeros(3)}, protocol=2),  # numpy's own reconstruct: not a torch tensor either
])
def test_a_pickle_that_asks_for_another_global_is_refused_unrun(payload, capsys):
    with pytest.raises(UnsupportedState, match="refers to"):
        read_state(_with_pickle(payload))
    assert "must never run" not in capsys.readouterr().out


def test_a_broadcast_view_larger_than_its_storage_is_left_to_torch():
    with pytest.raises(UnsupportedState, match="over a storage of 1"):
        read_state(_saved({"wide": torch.zeros(1).expand(1000)}))  # stride 0: 1,000 values from 1


@pytest.mark.parametrize("data", [b"not a zip", _with_pickle(pickle.dumps([1, 2], protocol=2))])
def test_other_files_are_unsupported_not_crashes(data):
    with pytest.raises(UnsupportedState):
        read_state(data)


def test_the_numpy_scorer_answers_bit_for_bit_as_the_torch_loaded_form():
    torch.manual_seed(3)
    params = TrainParams(embed_dim=8).model_dump()
    model = build_from_params(params, 400, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    mark_seen(model, torch.rand(400) < 0.5)
    state = export_state(model.eval())
    arrays = read_state(_saved(state))
    scorer = FoldedBagScorer(400, arrays["rows"], arrays["table"], arrays["bias"])
    folded = served_model(params, 400, 3, state)
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 40, 200)  # empty bags included
    ids = rng.integers(0, 400, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    assert np.array_equal(scorer.logits_numpy(ids, offsets), folded.logits_numpy(ids, offsets))


def test_a_registered_embedding_bag_model_loads_and_answers_without_torch(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(), "np-1", emit=lambda _l: None, progress=False)
    card = registry.register_run(file_store, "toy-model", record, alias="production")
    texts = ["free cash prize click now", "project meeting notes agenda"]
    featurizer, weights = _parts(file_store, card)
    with_torch = served_model(card["params"]["train"], featurizer.num_ids, len(featurizer.labels),
                              torch.load(io.BytesIO(weights), weights_only=True))  # as loaded until now
    script = ("import json, sys\n"
              "from components.common.storage import FileStore\n"
              "from components.stages.registry import store as registry\n"
              f"loaded = registry.load(FileStore({str(file_store.root)!r}), 'toy-model', 'production')\n"
              f"probs = loaded.predict_proba({texts!r})\n"
              f"log = loaded.predict_log_proba_tokenized([loaded.featurizer.tokenize(t) for t in {texts!r}])\n"
              "print(json.dumps({'torch': 'torch' in sys.modules, 'probs': probs.tolist(), 'log': log.tolist()}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout)
    assert answer["torch"] is False
    loaded = registry.load(file_store, "toy-model", "production")
    assert isinstance(loaded.model, FoldedBagScorer)
    reference = registry.LoadedModel(card, with_torch, loaded.featurizer)
    assert answer["probs"] == reference.predict_proba(texts).tolist()
    assert answer["log"] == reference.predict_log_proba_tokenized(
        [loaded.featurizer.tokenize(t) for t in texts]).tolist()


def _parts(file_store, card):
    from components.stages.featurize.core import Featurizer

    prefix = f"models/toy-model/{card['version']}"
    return (Featurizer.loads(file_store.read_bytes(f"{prefix}/featurizer.json")),
            file_store.read_bytes(f"{prefix}/weights.pt"))


def test_a_compact_table_that_does_not_fit_the_featurizer_is_refused_naming_the_file(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(), "bad-1", emit=lambda _l: None, progress=False)
    featurizer = file_store.read_bytes("runs/bad-1/model/featurizer.json")
    bad = _saved({"rows": torch.tensor([0, 10**9], dtype=torch.int32), "table": torch.zeros(2, 2),
                  "bias": torch.zeros(2)})  # a row id far past the featurizer's ids
    card = registry.register(file_store, "bad-model", bad, featurizer, {
        "params": record["params"], "dataset": record["dataset"], "metrics": {}, "labels": record["labels"],
        "run_id": "bad-1", "run_key": record["run_key"]})
    with pytest.raises(IntegrityError, match=r"bad-model/.*weights\.pt: row ids outside"):
        registry.load(file_store, "bad-model", card["version"])
