"""Every place on the cluster path where a shell could re-read a command's arguments, checked.

Katib's metrics collector joins a trial's argv with spaces and runs it with `sh -c`
(tests/integration/test_upstream.py runs that rewrite). The other places a command passes through:
- the Spark driver: the operator's spark-submit builds the driver pod's args, the image's
  entrypoint (images/spark-entrypoint.sh) hands them to spark-submit, Spark's launcher to the
  Python driver program;
- KFP's launcher: it execs the task's command and args (no shell), and the lightweight component's
  `sh -ec` script forwards them as "$@";
- the monitoring CronJob and the TrainJob: exec-form commands.
Conveyor's own arguments are shell-safe words everywhere (components/common/argcodec.py), so no
hop can change them; these tests also show that the hops themselves keep any argument intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.common.argcodec import is_shell_safe
from components.common.config import ClusterConfig, SparkConfig
from tests.support.paths import ROOT

UGLY = json.dumps({"features": {"char_ngrams": [], "note": "it's $HOME & `x` | y > z; *"}})


def _spark_apps():
    from components.stages.featurize.engines import FeaturizeJob
    from components.stages.featurize.engines import spark_application as featurize_app
    from components.stages.ingest.spark_launcher import IngestJob, spark_application

    cluster = ClusterConfig(namespace="team-a")
    ingest = spark_application("run-1", IngestJob(["s3://raw/mail box/"], "mail", "s3://conveyor",
                                                  {"label_map": {"a b": "ham"}}, {"labels": ["ham", "spam"]}),
                               SparkConfig(), cluster, "img:1")
    featurize = featurize_app("run-1", FeaturizeJob("s3://conveyor", "mail", "v1", {"salt": "x y"}, {"kind": "hashing"},
                                                    {"train": "jobs/featurize/staged/a/train.parquet"}),
                              SparkConfig(), cluster, "img:1")
    return ingest, featurize


def test_spark_application_arguments_are_shell_safe_and_decode_to_the_job():
    from components.common.argcodec import decode_object

    for app in _spark_apps():
        args = app["spec"]["arguments"]
        assert all(is_shell_safe(a) for a in args), args
        job = decode_object(args[args.index("--job-b64") + 1], "--job-b64")
        assert job["store"] == "s3://conveyor"


def test_the_images_spark_entrypoint_hands_the_driver_its_arguments_unchanged(tmp_path):
    """images/spark-entrypoint.sh `driver ...` (as Spark on Kubernetes starts the driver pod) passes
    each argument to spark-submit as it came, whatever it holds."""
    fake = tmp_path / "spark" / "bin"
    fake.mkdir(parents=True)
    (fake / "spark-submit").write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n")
    (fake / "spark-submit").chmod(0o755)
    args = ["--properties-file", "/opt/spark/conf/spark.properties", "--class",
            "org.apache.spark.deploy.PythonRunner", "local:///x/spark_main.py", "--job-b64", "eyJ", "--ugly", UGLY]
    out = subprocess.run(["bash", str(ROOT / "images" / "spark-entrypoint.sh"), "driver", *args],
                         env={**os.environ, "SPARK_HOME": str(tmp_path / "spark")}, capture_output=True, check=True)
    received = out.stdout.decode().split("\0")[:-1]
    assert received[-len(args):] == args and received[:2] == ["--conf", "spark.driver.bindAddress=0.0.0.0"]


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (make java)")
def test_sparks_own_submit_chain_keeps_a_python_drivers_arguments(tmp_path):
    """spark-submit -> spark-class -> Spark's launcher -> PythonRunner, the real chain a driver's
    arguments go through: each arrives as one argv entry, even one with spaces, quotes and $."""
    import pyspark

    program = tmp_path / "driver.py"
    program.write_text("import json, sys\nprint('ARGV=' + json.dumps(sys.argv[1:]))\n")
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_HOME": str(submit.parent.parent)}
    out = subprocess.run([str(submit), "--master", "local[1]", str(program), "--job-b64", "eyJ", UGLY],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("ARGV="))
    assert json.loads(line[5:]) == ["--job-b64", "eyJ", UGLY]


def _compiled_executors():
    for path in sorted((ROOT / "pipelines" / "compiled").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "deploymentSpec" in doc:
                for name, executor in doc["deploymentSpec"]["executors"].items():
                    yield f"{path.name}:{name}", executor["container"]


def test_kfp_tasks_pass_their_arguments_without_a_shell_rejoining_them():
    """KFP's launcher execs command + args as given; a lightweight component's `sh -ec` script
    forwards its arguments only as "$0" and "$@" (quoted), never $* or a bare $@; so the executor
    input (JSON, substituted by the launcher into one argument) reaches the executor unchanged."""
    seen = 0
    for where, container in _compiled_executors():
        command, args = container.get("command") or [], container.get("args") or []
        assert isinstance(args, list) and isinstance(command, list), where
        if command[:1] in (["sh"], ["bash"]) and command[1] in ("-c", "-ec"):
            script = command[2]
            bare = re.sub(r'"\$[0@]"', "", script)
            assert "$*" not in script and "$@" not in bare and "$0" not in bare, (where, script)
            seen += 1
    assert seen >= 10


def test_the_forwarding_script_keeps_an_executor_input_intact():
    """The compiled script itself, run by sh with a JSON executor input: the program sees it whole."""
    _, container = next(iter(_compiled_executors()))
    script = container["command"][2].replace("python3 -m kfp.dsl.executor_main",
                                             f"{sys.executable} -c 'import json,sys; print(json.dumps(sys.argv[1:]))'")
    out = subprocess.run(["sh", "-ec", script, "component source", "--executor_input", UGLY, "--function_to_execute",
                          "f"], capture_output=True, text=True, check=True)
    argv = json.loads(out.stdout.strip().splitlines()[-1])
    assert argv[-4:] == ["--executor_input", UGLY, "--function_to_execute", "f"]


def _cronjobs():
    import helm_python

    for path in (ROOT / "manifests").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CronJob":
                yield doc
    rendered = helm_python.Chart.load(str(ROOT / "charts" / "conveyor")).render({}, name="conveyor", namespace="team-a",
                                                                                is_install=True)
    for name, text in rendered.items():
        if not name.endswith("NOTES.txt"):
            yield from (d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CronJob")


def test_cronjobs_and_the_trainjob_run_exec_form_commands_of_shell_safe_words():
    from components.stages.train.launch import entry_args
    from components.stages.train.trainjob import train_job
    from tests.support.training_data import small_config

    found = 0
    for cron in _cronjobs():
        for container in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
            argv = [*container.get("command", []), *container.get("args", [])]
            assert argv[0] not in ("sh", "bash", "/bin/sh", "/bin/bash"), argv
            assert all(is_shell_safe(a) for a in argv), argv
            found += 1
    assert found >= 2
    job = train_job("run-1", entry_args("s3://conveyor", "spam", "latest", small_config(), "run-1", "img:1"),
                    ClusterConfig(namespace="team-a", gpus_per_trial=0), "img:1")
    command = job["spec"]["trainer"]["command"]
    assert command[0] == "torchrun" and all(is_shell_safe(a) for a in command), command
