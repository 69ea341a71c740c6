"""The deployment record, typed: both backends store the keys they set and nothing else, the
release step's output reads back as the same record, and a file that is not one is refused by name."""

from __future__ import annotations

import json

import pytest

from components.common.errors import IntegrityError
from components.stages.release.artifacts import DeploymentRecord
from components.stages.release.records import store_record

FIRST = {"model": "toy-model", "candidate": "v2", "env": "production", "backend": "local", "started_at": "t0",
         "strategy": "canary", "config": {"interval_s": 1}, "stable": None, "outcome": "Promoted",
         "reason": "first deployment: no stable to compare", "state": None}


def test_a_stored_record_holds_the_keys_its_backend_set_and_reads_back_whole(tmp_path, file_store):
    lines = []
    record = store_record(file_store, FIRST, log=lines.append)

    stored = file_store.read_json(record.record_uri[len(file_store.uri) + 1:])
    assert set(stored) == {*FIRST, "finished_at"}  # no null keys for what a local first release never set
    assert "inference_service" not in stored and "record_uri" not in stored
    assert record.promoted and lines == [f"canary outcome: Promoted (record {record.record_uri})"]

    path = tmp_path / "deployment.json"
    record.write(str(path))  # the release step's output: the stored record plus where it is
    assert DeploymentRecord.read(str(path)) == record
    assert json.loads(path.read_text())["record_uri"] == record.record_uri


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read"),
    (json.dumps({**FIRST, "weight": 50}), r"not a deployment record \(weight: Extra inputs"),
    (json.dumps({k: v for k, v in FIRST.items() if k != "outcome"}), r"outcome: Field required"),
    (json.dumps({**FIRST, "backend": "k8s"}), r"backend: Input should be 'local' or 'kserve'"),
])
def test_a_file_that_is_not_a_deployment_record_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "deployment.json"
    path.write_text(content)
    with pytest.raises(IntegrityError, match=rf"{path}: .*{message}"):
        DeploymentRecord.read(str(path))


def test_a_release_that_breaks_the_record_model_stores_nothing(file_store):
    with pytest.raises(ValueError, match="outcome"):
        store_record(file_store, {k: v for k, v in FIRST.items() if k != "outcome"})
    assert file_store.list("deployments/") == []
