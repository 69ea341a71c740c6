"""The store in transit and at rest, proven on the real S3 server and on its own files."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from components.common.errors import StoreError
from components.common.storage import open_store
from pipelines.certs import make_pki
from pipelines.s3server import EmbeddedS3


def _files_containing(folder: str, marker: bytes) -> list[str]:
    hits = []
    for path in Path(folder).rglob("*"):
        if path.is_file() and marker in path.read_bytes():
            hits.append(str(path))
    return hits


def _write_markers(server: EmbeddedS3, tmp_path: Path, monkeypatch, encryption: str) -> bytes:
    """A marker inside incompressible bytes (the server compresses what it can), written once with a
    single PUT and once as a multipart upload; the server is stopped so that every volume is flushed."""
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", encryption)
    marker = b"CONVEYOR-MARKER-" + secrets.token_hex(12).encode()
    store = open_store("s3://conveyor/at-rest")
    store.write_bytes("small.bin", os.urandom(3000) + marker + os.urandom(3000))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20) + marker + os.urandom(1000))  # over 5 MiB: multipart
    store.upload(str(big), "big.bin")
    assert store.read_bytes("small.bin").count(marker) == 1
    store.download("big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    return marker


@pytest.mark.parametrize("encryption", ["none", "sse-s3", "sse-c"])
def test_a_marker_reaches_the_servers_disk_only_without_encryption(tmp_path, monkeypatch, encryption):
    data_dir = tmp_path / "s3"
    server = EmbeddedS3(data_dir=str(data_dir), tls=True, encryption=encryption).start()
    try:
        marker = _write_markers(server, tmp_path, monkeypatch, encryption)
    finally:
        server.stop()
    hits = _files_containing(str(data_dir / "data"), marker)
    if encryption == "none":
        assert hits, "the control: without encryption the marker is on disk in plaintext"
    else:
        assert hits == [], f"{encryption}: the marker is on disk in plaintext in {hits}"


def test_sse_c_objects_need_their_key_and_a_wrong_key_is_a_clear_error(s3_tls_server, monkeypatch):
    for key, value in s3_tls_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", "sse-c")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("CONVEYOR_STORE_SSE_C_KEY", key)
    open_store("s3://conveyor/ssec").write_bytes("x.json", b'{"a": 1}')
    monkeypatch.setenv("CONVEYOR_STORE_SSE_C_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(StoreError) as wrong:
        open_store("s3://conveyor/ssec").read_bytes("x.json")
    assert key not in str(wrong.value)
    monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", "none")
    with pytest.raises(StoreError, match=r"encrypt|SSE|Server Side"):
        open_store("s3://conveyor/ssec").read_bytes("x.json")  # without the key: refused, not garbage


@pytest.mark.parametrize("env, message", [
    ({"CONVEYOR_STORE_ENCRYPTION": "aes"}, "expected one of none, sse-s3, sse-kms, sse-c"),
    ({"CONVEYOR_STORE_ENCRYPTION": "sse-kms"}, "needs the KMS key id in $CONVEYOR_STORE_KMS_KEY_ID"),
    ({"CONVEYOR_STORE_ENCRYPTION": "sse-c", "CONVEYOR_STORE_SSE_C_KEY": "c2hvcnQ="}, "a base64 256-bit key"),
])
def test_bad_encryption_settings_are_clear_errors(s3_tls_server, monkeypatch, env, message):
    for key, value in {**s3_tls_server.env(), **env}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StoreError) as caught:
        open_store("s3://conveyor")
    assert message in str(caught.value)
    assert "c2hvcnQ=" not in str(caught.value)


def test_kms_and_sse_c_refuse_a_plain_http_endpoint_and_a_folder_store_refuses_encryption(s3_server, monkeypatch,
                                                                                          tmp_path):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", "sse-kms")
    monkeypatch.setenv("CONVEYOR_STORE_KMS_KEY_ID", "alias/conveyor")
    with pytest.raises(StoreError, match="needs an https endpoint"):
        open_store("s3://conveyor")
    monkeypatch.setenv("CONVEYOR_STORE_ENCRYPTION", "sse-s3")
    with pytest.raises(StoreError, match="only an S3 store"):
        open_store(str(tmp_path / "folder"))


def test_tls_errors_name_the_cause(s3_tls_server, monkeypatch, tmp_path):
    """An untrusted certificate and a plain-HTTP client of the TLS port fail in one line each."""
    for key, value in s3_tls_server.env().items():
        monkeypatch.setenv(key, value)
    open_store("s3://conveyor").check()  # trusted through AWS_CA_BUNDLE
    other = make_pki(tmp_path / "other", ca_name="Someone else's CA")
    monkeypatch.setenv("AWS_CA_BUNDLE", other.ca)
    with pytest.raises(StoreError, match="is not trusted; set AWS_CA_BUNDLE"):
        open_store("s3://conveyor").check()
    monkeypatch.delenv("AWS_CA_BUNDLE")
    with pytest.raises(StoreError, match="is not trusted"):
        open_store("s3://conveyor").check()  # certifi's bundle does not know the run's CA
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(StoreError, match=r"AWS_CA_BUNDLE=.*no such file"):
        open_store("s3://conveyor")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_tls_server.endpoint.replace("https://", "http://"))
    with pytest.raises(StoreError) as plain:
        open_store("s3://conveyor").check()
    assert s3_tls_server.secret_key not in str(plain.value)
