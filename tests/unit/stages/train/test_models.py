"""The served form of a model: only the rows training used, unseen ids neutral, exact in eval mode;
a run keeps no checkpoint once it has completed."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import torch

from components.stages.registry import store as registry
from components.stages.train.config import TrainParams
from components.stages.train.entrypoint import run_training
from components.stages.train.models import build_from_params, export_state, mark_seen, served_model
from components.tracking.runs import remove_run_files
from tests.support.training_data import ingest_corpus, small_config

NUM_IDS, CLASSES = 500, 3


def _trained_looking(family: str) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    torch.manual_seed(5)
    params = TrainParams(family=family, embed_dim=8, channels=4, kernel_sizes=[2, 3], max_len=16).model_dump()
    model = build_from_params(params, NUM_IDS, CLASSES)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # every row, seen or not, far from zero: an unseen row would show
        if family == "cnn":
            model.embedding.weight[model.pad_id] = 0
    seen = torch.rand(NUM_IDS) < 0.4
    mark_seen(model, seen)
    return model.eval(), seen, params


def _bags(ids_per_doc: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([i for doc in ids_per_doc for i in doc], dtype=torch.long)
    lengths = torch.tensor([len(doc) for doc in ids_per_doc])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)[:-1]])
    return ids, offsets


@pytest.mark.parametrize("family", ["embedding_bag", "cnn"])
def test_the_served_form_answers_as_the_trained_module_from_the_seen_rows_only(family):
    model, seen, params = _trained_looking(family)
    state = export_state(model)
    assert torch.equal(state["rows"].long(), torch.nonzero(seen).flatten())
    served = served_model(params, NUM_IDS, CLASSES, state)
    generator = torch.Generator().manual_seed(1)
    docs = [torch.randint(0, NUM_IDS, (int(n),), generator=generator).tolist()
            for n in torch.randint(1, 30, (40,), generator=generator)] + [[int(torch.nonzero(~seen)[0])]]
    with torch.no_grad():
        expected, actual = model(*_bags(docs)), served(*_bags(docs))
    assert torch.allclose(actual, expected, atol=1e-5), (actual - expected).abs().max()
    if family == "embedding_bag":  # the classifier folded in: classes numbers per seen row
        assert state["table"].shape == (int(seen.sum()), CLASSES)


def test_the_embedding_bag_models_numpy_scoring_is_its_torch_forward():
    """The scoring path (LoadedModel._forward) computes the folded model in numpy: the same logits
    as the module, empty bags included (the bias alone, as an empty torch bag sums to zero)."""
    model, _seen, params = _trained_looking("embedding_bag")
    served = served_model(params, NUM_IDS, CLASSES, export_state(model))
    generator = torch.Generator().manual_seed(2)
    docs = [torch.randint(0, NUM_IDS, (int(n),), generator=generator).tolist()
            for n in torch.randint(1, 30, (60,), generator=generator)]
    ids, offsets = _bags(docs)
    with torch.no_grad():
        expected = served(ids, offsets).numpy()
    assert np.allclose(served.logits_numpy(ids.numpy(), offsets.numpy()), expected, rtol=0, atol=1e-6)
    # empty bags first, in the middle and last
    ids, offsets = torch.tensor([3, 4, 5]), torch.tensor([0, 0, 2, 2, 3])
    with torch.no_grad():
        expected = served(ids, offsets).numpy()
    actual = served.logits_numpy(ids.numpy(), offsets.numpy())
    assert np.allclose(actual, expected, rtol=0, atol=1e-6)
    assert np.array_equal(actual[[0, 2, 4]], np.repeat(served.bias.numpy()[None], 3, axis=0))
    assert served.logits_numpy(ids.numpy()[:0], offsets.numpy()[:0]).shape == (0, CLASSES)


def test_an_unseen_id_changes_nothing_in_the_embedding_bag_model_and_reads_as_padding_in_the_cnn():
    model, seen, params = _trained_looking("embedding_bag")
    served = served_model(params, NUM_IDS, CLASSES, export_state(model))
    known, unseen = torch.nonzero(seen).flatten()[:6].tolist(), torch.nonzero(~seen).flatten()[:3].tolist()
    with torch.no_grad():
        assert torch.equal(served(*_bags([known])), served(*_bags([known + unseen])))
        assert torch.equal(served(*_bags([unseen])), served.bias.unsqueeze(0))  # nothing known: the prior

    cnn, seen, params = _trained_looking("cnn")
    known, unseen = torch.nonzero(seen).flatten()[:6].tolist(), int(torch.nonzero(~seen)[0])
    with torch.no_grad():
        assert torch.equal(cnn(*_bags([[*known[:3], unseen, *known[3:]]])),
                           cnn(*_bags([[*known[:3], cnn.pad_id, *known[3:]]])))
    cnn.train()  # training never meets an unseen id, so the mask applies in eval only
    assert cnn.training


def test_a_registered_model_is_small_and_a_word_training_never_saw_does_not_move_it(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(), "compact-1", emit=lambda _l: None,
                          progress=False)
    card = registry.register_run(file_store, "toy-model", record, alias=None)
    weights = torch.load(io.BytesIO(file_store.read_bytes(f"models/toy-model/{card['version']}/weights.pt")),
                         weights_only=True)
    rows = weights["rows"].numel()
    assert 0 < rows < 4096 and weights["table"].shape == (rows, 2)  # 2 numbers per seen row, not embed_dim

    loaded = registry.load(file_store, "toy-model", card["version"])
    seen = set(weights["rows"].tolist())
    text = "free cash prize for the team meeting"
    base = Counter(loaded.featurizer.encode(pa.array([text])).ids.tolist())

    def new_features(word: str) -> set[int]:  # its unigram and its bigram with the word before
        return set(Counter(loaded.featurizer.encode(pa.array([f"{text} {word}"])).ids.tolist()) - base)

    word = next(w for w in (f"zq{i}" for i in range(10_000)) if not new_features(w) & seen)
    assert new_features(word)
    tokenize = loaded.featurizer.tokenize
    with_word, without = loaded.predict_log_proba_tokenized([tokenize(f"{text} {word}"), tokenize(text)])
    assert with_word.tolist() == without.tolist()


def test_a_completed_run_drops_its_checkpoint_and_keeps_it_when_asked(tmp_path, file_store):
    version = ingest_corpus(tmp_path, file_store)
    done = run_training(file_store, "toy", version, small_config(), "ck-1", emit=lambda _l: None, progress=False)
    assert not file_store.exists("runs/ck-1/checkpoint.pt") and done["artifacts"]["checkpoint"] is None
    short = run_training(file_store, "toy", version, small_config(keep_checkpoint=True), "ck-short",
                         emit=lambda _l: None, progress=False)
    # a run shorter than train.checkpoint_every_s (60 s) writes no checkpoint at all
    assert short["artifacts"]["checkpoint"] is None and not file_store.exists("runs/ck-short/checkpoint.pt")
    kept = run_training(file_store, "toy", version, small_config(keep_checkpoint=True, checkpoint_every_s=0), "ck-2",
                        emit=lambda _l: None, progress=False)
    assert kept["artifacts"]["checkpoint"] and kept["sha256"] == done["sha256"]
    state = torch.load(io.BytesIO(file_store.read_bytes("runs/ck-2/checkpoint.pt")), weights_only=True)
    rows = state["rows"].numel()
    # what resume needs, for the rows training updates only; the best epoch in its small served form
    assert state["model"]["embedding.weight"].shape[0] == rows < 4096
    moments = state["optimizer"]["sparse"]["state"][0]
    assert moments["exp_avg"].shape[0] == moments["exp_avg_sq"].shape[0] == rows
    assert set(state["best"]["state"]) == {"rows", "table", "bias"}


def test_a_pruned_trial_that_recorded_nothing_still_loses_its_checkpoint(file_store):
    file_store.write_bytes("runs/pruned-t1/checkpoint.pt", b"state")
    assert remove_run_files(file_store, "pruned-t1", "not the best trial") == ["checkpoint.pt"]
    assert not file_store.list("runs/")


@pytest.mark.parametrize("family", ["embedding_bag", "cnn"])
def test_weights_written_before_the_compact_form_still_load_and_answer_as_then(family):
    model, _seen, params = _trained_looking(family)
    mark_seen(model, torch.ones(NUM_IDS, dtype=torch.bool))  # then: every row answered
    legacy = {k: v for k, v in model.state_dict().items() if k != "seen"}
    served = served_model(params, NUM_IDS, CLASSES, legacy)
    ids, offsets = _bags([[1, 2, 3], [4, 5]])
    with torch.no_grad():
        assert torch.equal(served(ids, offsets), model(ids, offsets))
    with pytest.raises(ValueError, match="fit neither model form"):
        served_model(params, NUM_IDS, CLASSES, {"embedding.weight": legacy["embedding.weight"]})


def test_weights_of_no_known_form_are_refused_naming_the_file(tmp_path, file_store):
    from components.common.errors import IntegrityError

    version = ingest_corpus(tmp_path, file_store)
    record = run_training(file_store, "toy", version, small_config(), "odd-1", emit=lambda _l: None, progress=False)
    featurizer = file_store.read_bytes("runs/odd-1/model/featurizer.json")
    odd = io.BytesIO()
    torch.save({"rows": torch.zeros(3, dtype=torch.int32), "table": torch.zeros(3, 5)}, odd)  # 5 classes: no
    card = registry.register(file_store, "odd-model", odd.getvalue(), featurizer, {
        "params": record["params"], "dataset": record["dataset"], "metrics": {}, "labels": record["labels"],
        "run_id": "odd-1", "run_key": record["run_key"]})
    with pytest.raises(IntegrityError, match=r"odd-model/.*weights\.pt: the weights are not an exported"):
        registry.load(file_store, "odd-model", card["version"])
