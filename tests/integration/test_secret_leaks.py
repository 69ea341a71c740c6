"""No secret value in an error message: the CLI's error paths run with recognisable secrets (S3 keys,
an SSE-C key, a webhook URL's token, an inference token), and stdout and stderr are searched for them.
(The whole local run is searched in tests/integration/test_pipeline.py's training test.)"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from components.common.config import PROJECT_ROOT

SECRET_KEY = "LEAKCHECK-secret-" + "9d2e" * 6
ACCESS_KEY = "LEAKCHECK-access-5a5a"
SSE_C_KEY = base64.b64encode(b"LEAKCHECK-sse-c-key-32-bytes!!!!").decode()
WEBHOOK_TOKEN = "LEAKCHECK-hook-" + "c0ffee" * 4
ALL = (SECRET_KEY, ACCESS_KEY, SSE_C_KEY, WEBHOOK_TOKEN, "LEAKCHECK")


def _conveyor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=180, env={**os.environ, **env})


def _clean(done: subprocess.CompletedProcess) -> None:
    text = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in text, text[-2000:]
    for secret in ALL:
        assert secret not in text, f"{secret[:20]}... is in the output: {text[-1500:]}"


def test_refused_credentials_unreachable_stores_and_bad_keys_name_no_secret(s3_server, tmp_path):
    base = {**s3_server.env(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    refused = _conveyor("data", "versions", "toy", "--store", "s3://conveyor", env=base)
    _clean(refused)
    assert "credentials refused" in refused.stderr
    # credentials in the endpoint URL's user part, and a store that is down
    down = _conveyor("data", "versions", "toy", "--store", "s3://conveyor",
                     env={**base, "AWS_ENDPOINT_URL": f"http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:9"})
    _clean(down)
    assert "unreachable" in down.stderr
    sse_c = _conveyor("data", "versions", "toy", "--store", "s3://conveyor",
                      env={**s3_server.env(), "CONVEYOR_STORE_ENCRYPTION": "sse-c",
                           "CONVEYOR_STORE_SSE_C_KEY": SSE_C_KEY})
    _clean(sse_c)
    assert "needs an https endpoint" in sse_c.stderr
    short = tmp_path / "token"
    short.write_text("LEAKCHECK\n")
    token = _conveyor("serve", "toy-model", "--auth-token-file", str(short), env={})
    _clean(token)


def test_an_unreachable_webhook_is_recorded_without_its_token():
    from components.stages.notify.core import post

    result = post(f"http://127.0.0.1:9/services/{WEBHOOK_TOKEN}?key={SECRET_KEY}", {"event": "x"}, timeout_s=2)
    assert result["delivered"] is False and result["error"].startswith("receiver http://127.0.0.1:9 unreachable")
    assert WEBHOOK_TOKEN not in str(result) and SECRET_KEY not in str(result)


@pytest.mark.parametrize("command", [["approve", "toy-model", "0123456789ab", "--env", "production", "--reason", "r"],
                                     ["monitor"], ["models", "list", "toy-model"]])
def test_other_commands_with_refused_credentials_name_no_secret(s3_server, command):
    env = {**s3_server.env(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "CONVEYOR_NOTIFY_URL": f"https://hooks.example.com/{WEBHOOK_TOKEN}"}
    _clean(_conveyor(*command, "--store", "s3://conveyor", env=env))
