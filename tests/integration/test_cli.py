"""The `conveyor` CLI as users run it: a subprocess, stdout parsed, stderr read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from components.common.config import PROJECT_ROOT

INGEST_FIELDS = {"dataset", "version", "parent", "new", "rows_read", "rows_accepted", "rows_quarantined",
                 "quarantine_uri", "manifest_uri"}


def conveyor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CONVEYOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=PROJECT_ROOT, timeout=300)


def test_ingest_prints_exactly_one_json_object_and_is_idempotent(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("body,kind\nhello world,a\nsecond row,b\n,a\n")
    store = str(tmp_path / "store")
    args = ("data", "ingest", str(src), "--dataset", "cli", "--store", store, "--text-col", "body",
            "--label-col", "kind")
    first = conveyor(*args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out) >= INGEST_FIELDS
    assert (out["new"], out["parent"], out["rows_read"], out["rows_accepted"], out["rows_quarantined"]) == \
        (True, None, 3, 2, 1)
    again = json.loads(conveyor(*args).stdout)
    assert (again["version"], again["new"]) == (out["version"], False)

    versions = conveyor("data", "versions", "cli", "--store", store)
    assert versions.returncode == 0 and out["version"] in versions.stdout
    shown = json.loads(conveyor("data", "show", "cli", out["version"], "--store", store, "--json").stdout)
    assert shown["version"] == out["version"] and shown["rows"]["quarantined"] == 1
    assert len(shown["parts"][0]["sha256"]) == 64 and shown["cleaning"]["min_chars"] == 1


@pytest.mark.parametrize("args, env, message, code", [
    (("data", "ingest", "/no/such/dir", "--dataset", "x"), {}, "/no/such/dir: no such file or folder", 2),
    (("data", "ingest", "{csv}", "--dataset", "x", "--text-col", "nope"), {},
     "no column 'nope' (columns: text, label)", 2),
    (("data", "ingest", "{blob}", "--dataset", "x"), {}, "unknown format", 2),
    (("data", "ingest", "{csv}", "--dataset", "x", "--store", "s3://conveyor"),
     {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
     "object store unreachable at http://127.0.0.1:9", 4),
    (("data", "show", "nothing-here"), {}, "dataset 'nothing-here' has no versions", 5),  # NotFoundError
    (("run", "--world-size", "0"), {}, "--world-size: world_size: Input should be greater than or equal to 1", 3),
])
def test_unusable_input_gives_one_clear_line(tmp_path, args, env, message, code):
    (tmp_path / "ok.csv").write_text("text,label\nhello,a\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02 binary")
    args = tuple(a.format(csv=tmp_path / "ok.csv", blob=tmp_path / "blob.bin") for a in args)
    if "--store" not in args:
        args = (*args, "--store", str(tmp_path / "st"))
    result = conveyor(*args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("conveyor: error: ") and message in err[0], err


def test_wrong_credentials_name_the_problem(tmp_path, s3_env):
    (tmp_path / "ok.csv").write_text("text,label\nhello,a\n")
    result = conveyor("data", "ingest", str(tmp_path / "ok.csv"), "--dataset", "x", "--store", "s3://conveyor",
                      env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert result.returncode == 4
    assert result.stderr.strip() == (f"conveyor: error: s3://conveyor: credentials refused by {s3_env.endpoint} "
                                     "(AccessDenied); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")


def test_kubectl_plugin_prints_help():
    result = subprocess.run([sys.executable, "-m", "pipelines.kubectl_plugin", "canary", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "status" in result.stdout and "promote" in result.stdout


def test_compile_with_config_writes_everything_and_exits_0(tmp_path):
    """`--config` must reach our parser: kserve parses sys.argv on import and used to take it for
    its own `--configure_logging` (exit 2, half the files written)."""
    out = conveyor("compile", "--config", "configs/tweets.yaml", "--k8s", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    written = {p.name for p in tmp_path.iterdir()}
    assert {"conveyor-training.yaml", "conveyor-training.k8s.yaml", "katib-experiment.yaml",
            "inferenceservice-standard.yaml", "prometheusrule.yaml"} <= written
    import yaml

    experiment = yaml.safe_load((tmp_path / "katib-experiment.yaml").read_text())
    command = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    from components.common.argcodec import decode_object

    trial_cfg = decode_object(command[command.index("--config-b64") + 1], "--config-b64")
    tweets = yaml.safe_load((PROJECT_ROOT / "configs/tweets.yaml").read_text())
    for section in ("train", "features"):  # the trials train what the config says, not the defaults
        assert {k: trial_cfg[section][k] for k in tweets[section]} == tweets[section]
