"""What `conveyor run` made is reachable from the same folder with no flags: the loop keeps its
store in the embedded S3 server's data under `.conveyor/s3`, and every command that reads or writes
the store, given none, uses it (through the loop's server while it runs, else one started for the
command and stopped after it)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from components.common.config import PROJECT_ROOT
from pipelines.s3server import EmbeddedS3

STORE_ENV = ("CONVEYOR_STORE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CONVEYOR_CONFIG")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_ENV}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def conveyor(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def loop_folder(tmp_path_factory):
    """A folder as `conveyor run` leaves it: the embedded server's data in .conveyor/s3 holding a
    dataset version, training runs and a registered champion; the server stopped."""
    from components.common.storage import open_store
    from pipelines.s3server import EmbeddedS3, loop_data_dir
    from tests.support.training_data import ingest_corpus, train_and_register

    folder = tmp_path_factory.mktemp("loop")
    # as `conveyor run` starts it by default: https with a certificate of its own, SSE-S3 on every write
    with EmbeddedS3(data_dir=str(folder / ".conveyor" / "s3"), tls=True, encryption="sse-s3") as server:
        store = open_store(server.env()["CONVEYOR_STORE"])
        version = ingest_corpus(folder, store, n=300)
        card = train_and_register(store, version, "loop-run", alias="champion")
    assert loop_data_dir(folder) is not None and not (folder / ".conveyor" / "s3" / "server.json").exists()
    return folder, version, card


def test_read_commands_find_what_the_loop_made_without_flags(loop_folder):
    folder, version, card = loop_folder
    versions = conveyor(folder, "data", "versions", "toy", "--json")
    assert versions.returncode == 0, versions.stderr
    assert [v["version"] for v in json.loads(versions.stdout)] == [version]
    shown = conveyor(folder, "data", "show", "toy", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["version"] == version
    models = conveyor(folder, "models", "list", "toy-model")
    assert models.returncode == 0 and card["version"] in models.stdout and "production" in models.stdout
    runs = conveyor(folder, "runs", "list", "--json")
    assert runs.returncode == 0 and "loop-run" in {r["run_id"] for r in json.loads(runs.stdout)}
    # every command stopped the server it started: nothing runs on the folder afterwards
    assert not (folder / ".conveyor" / "s3" / "server.json").exists()


def test_serve_finds_the_champion_the_loop_registered(loop_folder):
    folder, _version, card = loop_folder
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "toy-model@champion", "--port", str(port)],
                            env=_env(), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/toy-model:predict",
                                                 data=json.dumps({"instances": ["free cash now"]}).encode(),
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.load(response)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.5)
        assert answer["model_version"] == card["version"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not (folder / ".conveyor" / "s3" / "server.json").exists()  # its store server went with it


def test_a_running_loops_server_is_used_and_left_running(loop_folder):
    from pipelines.s3server import EmbeddedS3, loop_settings

    folder, version, _card = loop_folder
    data_dir = folder / ".conveyor" / "s3"
    assert loop_settings(data_dir) == {"tls": True, "encryption": "sse-s3"}  # a later start does the same
    with EmbeddedS3(data_dir=str(data_dir), **loop_settings(data_dir)) as server:  # as while `conveyor run` runs
        info = json.loads((folder / ".conveyor" / "s3" / "server.json").read_text())
        versions = conveyor(folder, "data", "versions", "toy", "--json")
        assert versions.returncode == 0 and json.loads(versions.stdout)[0]["version"] == version
        assert server.process.poll() is None  # still up: the command used it and did not stop it
        assert json.loads((folder / ".conveyor" / "s3" / "server.json").read_text()) == info


def test_an_explicit_store_wins_and_no_server_starts(loop_folder, tmp_path):
    folder, *_ = loop_folder
    out = conveyor(folder, "data", "versions", "toy", "--json", "--store", str(tmp_path / "other"))
    assert out.returncode == 5 and out.stdout == ""
    assert out.stderr.strip() == f"conveyor: error: dataset 'toy' has no versions in {(tmp_path / 'other').as_uri()}"
    assert not (folder / ".conveyor" / "s3" / "server.json").exists()


def test_compaction_gives_back_the_disk_space_of_overwritten_objects(tmp_path):
    """What `conveyor run` does before it stops its server: a checkpoint overwritten every epoch
    leaves each old copy in SeaweedFS's volume files until a vacuum."""
    with EmbeddedS3(data_dir=str(tmp_path / "s3"), tls=True, encryption="sse-s3") as server:
        client = server.client()
        blob = os.urandom(4 << 20)
        for _ in range(6):  # one live object, five dead copies
            client.put_object("conveyor", "runs/x/checkpoint.pt", io.BytesIO(blob), len(blob))
        client.put_object("conveyor", "runs/x.json", io.BytesIO(b"{}"), 2)
        before = server.footprint()
        # The master learns of deleted bytes from the volume server's heartbeat (every few seconds):
        # a vacuum right after the writes may find nothing to do yet, so ask again until it does.
        deadline = time.monotonic() + 60
        while True:
            after = server.compact()
            if before["disk_bytes"] - after["disk_bytes"] >= 4 * len(blob) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert before["objects"] == after["objects"] == 2 and after["object_bytes"] == len(blob) + 2
        # the five dead copies' space comes back (the folder's own files stay)
        assert before["disk_bytes"] - after["disk_bytes"] >= 4 * len(blob), (before, after)
        data = client.get_object("conveyor", "runs/x/checkpoint.pt")
        assert data.read() == blob  # the live copy survives


def test_a_vacuum_that_cannot_run_is_a_store_error_that_says_nothing_was_lost(tmp_path, monkeypatch):
    import urllib.error

    from components.common.errors import StoreError
    from pipelines import s3server

    def refused(*_args, **_kwargs):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with EmbeddedS3(data_dir=str(tmp_path / "s3")) as server:
        monkeypatch.setattr(s3server.urllib.request, "urlopen", refused)
        with pytest.raises(StoreError, match=r"vacuum at 127\.0\.0\.1:\d+ failed .*the store is intact"):
            server.compact()


def test_a_port_taken_while_the_server_starts_is_retried_on_another_block(tmp_path, monkeypatch):
    """Another process may bind one of the server's ports between the free-port check and the
    server's own bind: the start is retried on a fresh block instead of failing the run."""
    import pipelines.s3server as s3server

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1] - 1  # the block whose master port (+1) is already bound
    real = s3server._free_port_block
    offered = iter([taken])
    monkeypatch.setattr(s3server, "_free_port_block", lambda: next(offered, None) or real())
    try:
        with EmbeddedS3(data_dir=str(tmp_path / "s3")) as server:
            assert server.port != taken
            server.client().put_object("conveyor", "k", io.BytesIO(b"v"), 1)
            assert server.client().get_object("conveyor", "k").read() == b"v"
    finally:
        blocker.close()
