"""The hash-chained audit log on a file store and on the real S3 server: write-once entries,
concurrent writers, and tampering (edit, removal, reordering, a cut end) detected and named."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from components.common import audit
from components.common.errors import IntegrityError
from components.common.storage import FileStore
from tests.support.paths import ROOT


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return FileStore(str(tmp_path / "fs"))
    return request.getfixturevalue("s3_store")


def test_create_bytes_writes_once_and_never_replaces(store):
    assert store.create_bytes("once/x.json", b"first") is True
    assert store.create_bytes("once/x.json", b"second") is False
    assert store.read_bytes("once/x.json") == b"first"
    assert store.list("once/") == ["once/x.json"]  # no temporary file left beside it


def _log(store, n=4):
    for i in range(1, n + 1):
        audit.append(store, "model_registered", {"model": "spam" if i % 2 else "other", "version": f"v{i}"},
                     {"test_accuracy": 0.9 + i / 100}, actor={"kind": "user", "name": "ana"})


def test_an_intact_log_verifies_and_lists_by_model_and_time(store):
    _log(store)
    assert audit.verify(store) == 4
    entries = audit.read_entries(store)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4] and entries[0]["prev"] == audit.GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert [e["subject"]["version"] for e in audit.select(entries, model="spam")] == ["v1", "v3"]
    assert audit.select(entries, since="2999-01-01") == []
    assert len(audit.select(entries, since=entries[2]["time"])) == 2


def _rewrite(store, seq, change):
    key = audit.entry_key(seq)
    entry = json.loads(store.read_bytes(key))
    change(entry)
    store.write_bytes(key, json.dumps(entry).encode())


@pytest.mark.parametrize("tamper, message", [
    (lambda s: _rewrite(s, 2, lambda e: e["details"].update(test_accuracy=0.99)), "audit entry 2 .* was edited"),
    # an edit that recomputes the entry's own hash still breaks the next entry's link
    (lambda s: _rewrite(s, 2, lambda e: (e["details"].update(test_accuracy=0.99), e.update(hash=audit.entry_hash(e)))),
     "audit entry 3 .* does not follow entry 2"),
    (lambda s: s.delete(audit.entry_key(2)), "audit entry 2 is missing"),
    (lambda s: (lambda a, b: (s.write_bytes(audit.entry_key(2), b), s.write_bytes(audit.entry_key(3), a)))(
        s.read_bytes(audit.entry_key(2)), s.read_bytes(audit.entry_key(3))), "audit entry 2 .* holds entry 3"),
    (lambda s: s.delete(audit.entry_key(4)), "ends at entry 3 but entry 4 was written"),
])
def test_tampering_is_detected_and_names_the_entry(store, tamper, message):
    _log(store)
    tamper(store)
    with pytest.raises(IntegrityError, match=message):
        audit.verify(store)


WRITER = """
import sys
from components.common import audit
from components.common.storage import open_store
store = open_store(sys.argv[1])
for i in range(int(sys.argv[3])):
    audit.append(store, "release_step", {"model": "spam", "writer": sys.argv[2], "i": i})
"""


def test_concurrent_writers_on_the_real_s3_server_lose_nothing_and_keep_one_chain(s3_store, s3_env):
    writers, each = 4, 12
    env = {**os.environ, **s3_env.env(), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, s3_store.uri, f"w{w}", str(each)], env=env, cwd=ROOT)
             for w in range(writers)]
    assert [p.wait(timeout=300) for p in procs] == [0] * writers
    assert audit.verify(s3_store) == writers * each
    seen = sorted((e["subject"]["writer"], e["subject"]["i"]) for e in audit.read_entries(s3_store))
    assert seen == sorted((f"w{w}", i) for w in range(writers) for i in range(each))


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_the_cli_lists_verifies_and_exits_6_naming_a_broken_entry(tmp_path):
    store = FileStore(str(tmp_path / "store"))
    _log(store)
    listed = _cli("audit", "--model", "spam", "--json", "--store", store.uri, cwd=tmp_path)
    assert listed.returncode == 0 and [e["seq"] for e in json.loads(listed.stdout)] == [1, 3], listed.stderr
    table = _cli("audit", "--store", store.uri, cwd=tmp_path)
    assert table.returncode == 0 and "model_registered" in table.stdout and "ana" in table.stdout
    ok = _cli("audit", "verify", "--store", store.uri, cwd=tmp_path)
    assert ok.returncode == 0 and "audit log intact: 4 entries" in ok.stdout, ok.stderr
    bad_since = _cli("audit", "--since", "last week", "--store", store.uri, cwd=tmp_path)
    assert bad_since.returncode == 2 and "--since last week: expected an ISO date" in bad_since.stderr
    _rewrite(store, 3, lambda e: e["actor"].update(name="mallory"))
    broken = _cli("audit", "verify", "--store", store.uri, cwd=tmp_path)
    assert broken.returncode == 6 and "audit entry 3" in broken.stderr and "was edited" in broken.stderr
    assert "Traceback" not in broken.stderr
