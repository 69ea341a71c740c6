"""`make test-cluster`: every cluster command executed in its own image (built here from the project's
Dockerfiles by images/build.py, cached by content hash). Marked `cluster`, kept out of `make test`."""

from __future__ import annotations

import os

import pytest

from tests.support.pod_runner import build

_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items):
    # A conftest hook sees the whole session's items, not only this folder's: mark ours only.
    for item in items:
        if os.path.abspath(str(item.fspath)).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def images():
    """Build (or find cached) the three images; {name: {image, size_mb, built, ...}}."""
    return build.build_all(log=lambda msg: print(f"[images] {msg}"))


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    from pipelines.s3server import EmbeddedS3

    server = EmbeddedS3(buckets=("conveyor", "sources")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_secret(s3, monkeypatch):
    """The chart's S3 Secret keys (charts/conveyor/templates/s3-secret.yaml) for the test's server;
    also set for this process, which prepares and reads the store from the host."""
    env = s3.env()
    secret = {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return secret


@pytest.fixture
def s3_prefix(s3_secret, request):
    from components.common.storage import open_store

    uri = f"s3://conveyor/{request.node.name.replace('[', '-').replace(']', '').lower()[:50]}-{os.getpid()}"
    store = open_store(uri)
    store.delete("")
    return store
