"""The train step as a Kubeflow Trainer TrainJob: built from the Trainer's API models, checked
against them and the Trainer webhook's rules, launched with the Katib launcher's retry-safety
rules (deterministic name, adopt the same spec, refuse another, delete on failure / timeout)."""

from __future__ import annotations

import copy

import pytest

from components.common.config import ClusterConfig
from components.common.errors import AdmissionError, ClusterError, SpecError
from components.common.storage import FileStore
from components.stages.train.launch import entry_args
from components.stages.train.trainjob import SPEC_HASH_ANNOTATION, check_manifest, launch, outcome, train_job
from tests.standins.kubernetes.objects import CustomObjects
from tests.support.training_data import small_config

CLUSTER = ClusterConfig(namespace="team-a", nodes=2, procs_per_node=4, gpus_per_trial=1)


def _manifest(run_id="run-1", cluster=CLUSTER, **train):
    args = entry_args("s3://conveyor", "toy", "v1", small_config(**train), run_id, "img:1")
    return train_job(run_id, args, cluster, "img:1")


def test_the_trainjob_runs_torchrun_on_the_configured_topology_with_the_s3_secret():
    m = _manifest()
    assert (m["apiVersion"], m["kind"], m["metadata"]["namespace"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob",
                                                                          "team-a")
    spec = m["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                  "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)  # explicit: never "auto"
    assert trainer["command"][:3] == ["torchrun", "-m", "components.stages.train.entrypoint"]
    assert not any(a.startswith("--nnodes") or a.startswith("--nproc") for a in trainer["command"])  # PET_* say
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in trainer["env"] if "valueFrom" in e}
    assert secret_env["AWS_SECRET_ACCESS_KEY"] == {"name": "conveyor-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert not any(e["name"].startswith("PET_") for e in trainer["env"])
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["name"] == "node"
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod_spec["tolerations"]
    assert pod_spec["containers"][0]["name"] == "node"


def test_the_name_is_deterministic_and_a_dns_1035_label():
    a, b, other = _manifest(), _manifest(), _manifest(lr=0.5)
    assert a["metadata"]["name"] == b["metadata"]["name"] != other["metadata"]["name"]
    name = a["metadata"]["name"]
    assert len(name) <= 63 and name[0].isalpha() and name.replace("-", "").isalnum()


@pytest.mark.parametrize("mutate, error, message", [
    (lambda m: m["spec"]["trainer"].update(numNodes="2"), SpecError, "spec.trainer.numNodes: Input should be a valid"),
    (lambda m: m["spec"]["trainer"].update(numProcPerNod=2), SpecError,
     "unknown field 'numProcPerNod' in TrainerV1alpha1Trainer"),
    (lambda m: m["spec"].update(podTemplateOverrides=[]), SpecError,  # the pre-2.2 API
     "unknown field 'podTemplateOverrides' in TrainerV1alpha1TrainJobSpec"),
    (lambda m: m["spec"]["trainer"]["env"].append({"name": "PET_NNODES", "value": "3"}), AdmissionError,
     "must not have reserved envs"),
    (lambda m: m["metadata"].update(name="7-train"), AdmissionError, "RFC 1035 label"),
    (lambda m: m["spec"]["trainer"]["resourcesPerNode"]["limits"].update(cpu=["2"]), SpecError,
     r"limits.cpu: \['2'\] is none of \['float', 'str'\]"),
])
def test_what_the_trainer_would_refuse_is_refused_naming_the_field(mutate, error, message):
    m = _manifest()
    mutate(m)
    with pytest.raises(error, match=message):
        check_manifest(m)


class FakeTrainJobs(CustomObjects):
    """The TrainJob API in memory: conditions that move; on Complete, rank 0 has written the run
    record to the store, as the entrypoint does."""

    def __init__(self, store, result="Complete", existing=None):
        super().__init__(existing)
        self.store, self.result = store, result

    def watch(self, name, namespace, timeout_s):
        obj = self.stored(name, namespace)
        yield {**obj, "status": {"conditions": [{"type": "Created", "status": "True"}]}}
        if self.result == "timeout":
            return
        if self.result == "Complete":
            self.store.write_json("runs/run-1.json", {"run_id": "run-1", "distributed": {"world_size": 8}})
        obj["status"] = {"conditions": [{"type": "Complete", "status": "False"},
                                        {"type": self.result, "status": "True", "reason": "BackoffLimitExceeded",
                                         "message": "rank 3 exited 1"}]}
        yield obj


def test_the_launcher_creates_waits_and_returns_rank_0s_run_record(tmp_path):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeTrainJobs(store)
    assert launch(api, store, m, "run-1", 60, log=lambda _m: None)["distributed"] == {"world_size": 8}
    assert api.created == [m["metadata"]["name"]] and api.deleted == []


def test_the_launcher_adopts_the_same_spec_and_refuses_another(tmp_path):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeTrainJobs(store, existing=copy.deepcopy(m))
    assert launch(api, store, m, "run-1", 60, log=lambda _m: None)["run_id"] == "run-1" and api.created == []
    clash = copy.deepcopy(m)
    clash["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "0" * 64
    with pytest.raises(SpecError, match="exists with another spec"):
        launch(FakeTrainJobs(store, existing=clash), store, m, "run-1", 60, log=lambda _m: None)


@pytest.mark.parametrize("result, message", [("Failed", "Failed: BackoffLimitExceeded rank 3 exited 1"),
                                             ("timeout", "did not finish within 60s")])
def test_the_launcher_deletes_the_trainjob_on_failure_and_timeout(tmp_path, result, message):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeTrainJobs(store, result=result)
    with pytest.raises(ClusterError, match=message):
        launch(api, store, m, "run-1", 60, log=lambda _m: None)
    assert api.deleted == [m["metadata"]["name"]]  # no GPU node left running


def test_only_a_true_terminal_condition_ends_the_wait():
    running = {"metadata": {"name": "t", "namespace": "n"},
               "status": {"conditions": [{"type": "Complete", "status": "False"}]}}
    assert outcome(running) is None and outcome({"metadata": {"name": "t"}}) is None
    assert outcome({**running, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == \
        (True, "Complete")
