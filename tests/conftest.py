"""Shared fixtures. Integration tests run against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.common.storage import FileStore, open_store
from components.stages.ingest.config import CleaningConfig, SourceSettings


@pytest.fixture(scope="session")
def s3_server():
    from pipelines.s3server import EmbeddedS3

    server = EmbeddedS3(buckets=("conveyor", "sources")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_tls_server():
    """The same server with S3 over TLS only (a CA of its own) and encrypted volume writes."""
    from pipelines.s3server import EmbeddedS3

    server = EmbeddedS3(buckets=("conveyor",), tls=True, encryption="sse-s3").start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """AWS_* variables pointing at the real S3 server, for this test only."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def s3_store(s3_env, request):
    """A fresh prefix in the bucket per test, so tests never see each other's data."""
    prefix = request.node.name.replace("[", "-").replace("]", "").lower()[:60]
    store = open_store(f"s3://conveyor/{prefix}-{os.getpid()}")
    store.delete("")  # a rerun starts clean
    return store


@pytest.fixture
def file_store(tmp_path) -> FileStore:
    return FileStore(str(tmp_path / "store"))


@pytest.fixture
def mail_settings() -> SourceSettings:
    return SourceSettings(label_map={"easy-ham": "ham"})


@pytest.fixture
def cleaning() -> CleaningConfig:
    return CleaningConfig(min_chars=5, max_chars=20_000, labels=["ham", "spam"])


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory):
    """A champion (stable) and a different candidate of the same toy model (shared by the canary tests)."""
    from components.common.storage import FileStore
    from tests.support.training_data import corpus, ingest_corpus, train_and_register

    tmp = tmp_path_factory.mktemp("canary")
    store = FileStore(str(tmp / "store"))
    version = ingest_corpus(tmp, store)
    stable_card = train_and_register(store, version, "stable-run", alias="champion")
    cand_card = train_and_register(store, version, "cand-run", alias="candidate", seed=7)
    rows = corpus(400, seed=11)
    return store, stable_card["version"], cand_card["version"], [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.fixture
def own_two_versions(two_versions, tmp_path):
    """two_versions in a private copy of its store, champion = stable: for tests that write logs or
    damage files, so nothing leaks into the shared store."""
    from components.common.storage import FileStore
    from components.stages.registry.store import set_alias

    src, stable, *rest = two_versions
    store = FileStore(str(tmp_path / "own-store"))
    for key in src.list(""):
        store.write_bytes(key, src.read_bytes(key))
    set_alias(store, "toy-model", "champion", stable)
    return (store, stable, *rest)


@pytest.fixture(scope="session")
def spark():
    """One Spark local[2] session for every test that needs one (a JVM takes seconds to start)."""
    pytest.importorskip("pyspark")
    from components.common.spark import session

    spark = session()
    yield spark
    spark.stop()


@pytest.fixture
def receiver():
    """An HTTP server that keeps every JSON body posted to it and answers `answer`."""
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        answer = 204

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"body": json.loads(body), "content_type": self.headers["Content-Type"], "path": self.path})
            self.send_response(self.server.answer)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.answer = 204
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()
