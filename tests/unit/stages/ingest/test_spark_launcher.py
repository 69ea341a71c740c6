"""The SparkApplication launcher: the manifest is built from the Spark Operator's API models and
checked against them strictly; the launcher follows the Katib launcher's retry-safety rules
(deterministic name, adopt the same spec, refuse another, delete on failure / timeout)."""

from __future__ import annotations

import copy

import pytest

from components.common.config import ClusterConfig, SparkConfig
from components.common.errors import ClusterError, SpecError
from components.common.layout import ingest_job_result_key
from components.common.storage import FileStore
from components.stages.ingest.spark_launcher import (
    SPEC_HASH_ANNOTATION,
    IngestJob,
    application_name,
    check_manifest,
    launch,
    spark_application,
)
from tests.standins.kubernetes.objects import CustomObjects

JOB = IngestJob(["s3://raw/mail"], "mail", "s3://conveyor", {"format": "auto"}, {"min_chars": 5})


def _manifest(**spark):
    return spark_application("run-1", JOB, SparkConfig(**spark), ClusterConfig(namespace="team-a"), "img:1")


def test_manifest_carries_the_config_and_passes_the_operator_models():
    m = _manifest(executors=3, executor_cores=4, executor_memory="8g")
    assert m["apiVersion"] == "sparkoperator.k8s.io/v1beta2" and m["kind"] == "SparkApplication"
    assert m["metadata"]["namespace"] == "team-a"
    spec = m["spec"]
    assert (spec["type"], spec["mode"], spec["sparkVersion"], spec["image"]) == ("Python", "cluster", "4.3.0", "img:1")
    assert spec["executor"]["instances"] == 3 and spec["executor"]["cores"] == 4 and spec["executor"]["memory"] == "8g"
    assert spec["driver"]["serviceAccount"] == "conveyor-spark"
    for pod in (spec["driver"], spec["executor"]):
        assert pod["envFrom"] == [{"secretRef": {"name": "conveyor-s3"}}]  # S3 credentials from the secret
    assert spec["restartPolicy"] == {"type": "Never"}  # retries are the launcher's (adopt), not the operator's
    assert spec["arguments"][-1] == ingest_job_result_key(m["metadata"]["name"])
    assert spec["sparkConf"]["spark.sql.adaptive.coalescePartitions.enabled"] == "false"


def test_name_is_deterministic_and_a_dns_label():
    a, b = application_name("run-1", JOB), application_name("run-1", JOB)
    other = application_name("run-1", IngestJob(["s3://raw/other"], "mail", "s3://conveyor", {}, {}))
    assert a == b != other != application_name("run-2", JOB)
    assert len(a) <= 63 and a.replace("-", "").isalnum() and a.islower()


@pytest.mark.parametrize("path, change, message", [
    (("spec", "driver"), {"memry": "1g"}, "unknown field 'memry' in SparkV1beta2DriverSpec"),
    (("spec", "executor"), {"instances": "2"}, "spec.executor.instances: Input should be a valid integer"),
    (("spec",), {"sparkVersion": None}, "sparkVersion"),
])
def test_a_manifest_the_operator_models_do_not_describe_is_refused_naming_the_field(path, change, message):
    m = _manifest()
    node = m
    for key in path:
        node = node[key]
    node.update(change)
    if change.get("sparkVersion", 0) is None:
        del node["sparkVersion"]
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        check_manifest(m)


class FakeSparkApplications(CustomObjects):
    """The SparkApplication API in memory: a state that moves; on COMPLETED the "driver" has
    written its result to the store, as spark_main.py does."""

    def __init__(self, store, outcome="COMPLETED", existing=None):
        super().__init__(existing)
        self.store, self.outcome = store, outcome

    def watch(self, name, namespace, timeout_s):
        obj = self.stored(name, namespace)
        for state in ("SUBMITTED", "RUNNING"):
            yield {**obj, "status": {"applicationState": {"state": state}}}
        if self.outcome == "timeout":
            return
        if self.outcome == "COMPLETED":
            self.store.write_json(ingest_job_result_key(name), {"version": "abc", "rows_read": 3})
        obj["status"] = {"applicationState": {"state": self.outcome, "errorMessage": "driver exited 2"}}
        yield obj


def test_launcher_creates_waits_and_returns_the_drivers_result(tmp_path):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeSparkApplications(store)
    assert launch(api, store, m, 60, log=lambda _m: None) == {"version": "abc", "rows_read": 3}
    assert api.created == [m["metadata"]["name"]] and api.deleted == []


def test_launcher_adopts_the_same_spec_and_refuses_another(tmp_path):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeSparkApplications(store, existing=copy.deepcopy(m))
    assert launch(api, store, m, 60, log=lambda _m: None)["version"] == "abc" and api.created == []
    clash = copy.deepcopy(m)
    clash["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "0" * 64
    with pytest.raises(SpecError, match="exists with another spec"):
        launch(FakeSparkApplications(store, existing=clash), store, m, 60, log=lambda _m: None)


@pytest.mark.parametrize("outcome, message", [("FAILED", "FAILED: driver exited 2"),
                                               ("SUBMISSION_FAILED", "SUBMISSION_FAILED"),
                                               ("timeout", "did not finish within 60s")])
def test_launcher_deletes_the_application_on_failure_and_timeout(tmp_path, outcome, message):
    store, m = FileStore(str(tmp_path)), _manifest()
    api = FakeSparkApplications(store, outcome=outcome)
    with pytest.raises(ClusterError, match=message):
        launch(api, store, m, 60, log=lambda _m: None)
    assert api.deleted == [m["metadata"]["name"]]


def test_an_adopted_application_that_already_completed_is_not_waited_on(tmp_path):
    store, m = FileStore(str(tmp_path)), _manifest()
    done = copy.deepcopy(m) | {"status": {"applicationState": {"state": "COMPLETED"}}}
    store.write_json(ingest_job_result_key(m["metadata"]["name"]), {"version": "v1"})

    class NoWatch(FakeSparkApplications):
        def watch(self, *a):
            raise AssertionError("waited on a finished application")

    assert launch(NoWatch(store, existing=done), store, m, 60, log=lambda _m: None) == {"version": "v1"}
