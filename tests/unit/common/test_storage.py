"""The storage abstraction against a local folder and the real S3 server."""

from __future__ import annotations

import pytest

from components.common.errors import NotFoundError, StoreError
from components.common.storage import FileStore, locate, open_store


@pytest.fixture(params=["file", "s3", "s3-tls-sse-s3", "s3-tls-sse-c"])
def store(request, tmp_path, monkeypatch):
    """The whole contract on a folder, on the real S3 server, and on it over TLS (trusting its CA
    through AWS_CA_BUNDLE) with server-side encryption of every object written (SSE-S3, SSE-C)."""
    if request.param == "file":
        return FileStore(str(tmp_path / "fs"))
    if request.param == "s3":
        return request.getfixturevalue("s3_store")
    import base64
    import secrets

    server = request.getfixturevalue("s3_tls_server")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    if request.param == "s3-tls-sse-c":
        monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", "sse-c")
        monkeypatch.setenv("CONVEYOR_STORE_SSE_C_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    store = open_store(f"s3://conveyor/{request.node.name[:40].replace('[', '-').replace(']', '')}")
    assert store.endpoint.startswith("https://")
    store.delete("")
    return store


def test_create_bytes_writes_once(store):
    assert store.create_bytes("once/x.json", b"first") is True
    assert store.create_bytes("once/x.json", b"second") is False
    assert store.read_bytes("once/x.json") == b"first"


def test_round_trip_list_exists_delete(store, tmp_path):
    store.write_bytes("a/b/c.bin", b"\x00\x01payload")
    store.write_json("a/meta.json", {"k": [1, 2]})
    assert store.read_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert store.read_json("a/meta.json") == {"k": [1, 2]}
    assert store.list("a/") == ["a/b/c.bin", "a/meta.json"]
    assert store.exists("a/b/c.bin") and not store.exists("a/b")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # 10 MiB: multipart on S3
    store.upload(str(big), "a/big.bin")
    store.download("a/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    store.delete("a/")
    assert store.list("a/") == []


def test_missing_object_is_not_found(store):
    with pytest.raises(NotFoundError, match="no such object"):
        store.read_bytes("nope/none.json")
    with pytest.raises(NotFoundError, match="no such object"):
        store.size("nope/none.parquet")


def test_ranged_reads_fetch_what_a_parquet_reader_asks_for(store, tmp_path):
    """size, read_range and open_ranged: a seekable file over ranged GETs that pyarrow reads a
    Parquet file's footer and one row group from, fetching a fraction of the object."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.common.storage import RangedObject

    data = bytes(range(256)) * 1000
    store.write_bytes("r/blob.bin", data)
    assert store.size("r/blob.bin") == len(data)
    assert store.read_range("r/blob.bin", 1000, 300) == data[1000:1300]
    assert store.read_range("r/blob.bin", len(data) - 10, 100) == data[-10:]  # short at the end
    with store.open_ranged("r/blob.bin") as handle:
        handle.seek(-20, 2)
        assert handle.read() == data[-20:]
    rng = random.Random(1)
    table = pa.table({"text": [" ".join(f"w{rng.randrange(9000)}" for _ in range(30)) for _ in range(8000)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
    store.upload(str(tmp_path / "t.parquet"), "r/t.parquet")
    raw = RangedObject(store, "r/t.parquet")
    pf = pq.ParquetFile(raw)
    assert pf.num_row_groups == 8 and pf.read_row_group(5).equals(table.slice(5000, 1000))
    assert raw.fetched < store.size("r/t.parquet") / 2


def test_file_store_refuses_keys_outside_its_root(tmp_path):
    with pytest.raises(StoreError, match="escapes"):
        FileStore(str(tmp_path)).read_bytes("../../etc/passwd")


def test_s3_wrong_credentials_and_missing_bucket_are_clear(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreError, match="credentials refused"):
        open_store("s3://conveyor").check()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket").check()


def test_s3_store_down_fails_fast(monkeypatch):
    import time

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"unreachable at http://127\.0\.0\.1:9"):
        open_store("s3://conveyor").check()
    assert time.monotonic() - started < 10


def test_uris_and_defaults(tmp_path, monkeypatch):
    store, key = locate(str(tmp_path / "x.csv"))
    assert store.url(key) == (tmp_path / "x.csv").as_uri()
    monkeypatch.setenv("CONVEYOR_STORE", str(tmp_path / "st"))
    assert open_store().uri == (tmp_path / "st").as_uri()
    with pytest.raises(StoreError, match="unsupported store scheme"):
        open_store("gs://bucket")


def test_parallel_writers_of_one_key_never_leave_a_mixed_file(store, tmp_path):
    """Search trials in parallel fill the same feature cache: each write must land whole."""
    from concurrent.futures import ThreadPoolExecutor

    sources = []
    for i in range(4):
        path = tmp_path / f"part-{i}.bin"
        path.write_bytes(bytes([i]) * 2_000_000)
        sources.append(path)

    def write(i: int) -> None:
        for _ in range(5):
            store.upload(str(sources[i % 4]), "cache/train.parquet")
            store.write_bytes("cache/featurizer.json", bytes([i % 4]) * 500_000)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(8)))  # any writer's error is raised here
    for key, size in (("cache/train.parquet", 2_000_000), ("cache/featurizer.json", 500_000)):
        data = store.read_bytes(key)
        assert len(data) == size and len(set(data)) == 1  # one writer's copy, whole
    assert store.list("cache") == ["cache/featurizer.json", "cache/train.parquet"]  # no temporary left


def test_s3_without_an_endpoint_is_aws_s3_in_the_configured_region(monkeypatch, tmp_path):
    """No AWS_ENDPOINT_URL: AWS S3 itself, over https, in AWS_REGION, else the AWS config file's
    region for AWS_PROFILE (as the AWS tools read it), else us-east-1; no request is made here."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    assert open_store("s3://bucket").endpoint == "https://s3.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    store = open_store("s3://bucket/prefix")
    assert (store.endpoint, store.region, store.uri) == ("https://s3.eu-west-2.amazonaws.com", "eu-west-2",
                                                         "s3://bucket/prefix")
    monkeypatch.delenv("AWS_REGION")
    (tmp_path / "config").write_text("[default]\nregion = ap-south-1\n[profile ml]\nregion = ca-central-1\n")
    assert open_store("s3://bucket").region == "ap-south-1"
    monkeypatch.setenv("AWS_PROFILE", "ml")
    assert open_store("s3://bucket").endpoint == "https://s3.ca-central-1.amazonaws.com"
