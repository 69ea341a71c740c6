"""A manifest's parts, typed: what the ingest engines write is what readers accept, and a hand-edited
manifest that points outside its dataset or drops a checksum is refused by name before any read."""

from __future__ import annotations

import json

import pytest

from components.common.errors import IntegrityError
from components.dataset import versioning as v
from components.dataset.manifest import Part
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest

SHA = "ab" * 32


def _two_versions(tmp_path, store):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("text,label\nhello there,a\ngeneral kenobi,b\n")
    second.write_text("text,label\nhello there,a\ngeneral kenobi,b\nyou are a bold one,a\n")
    parent = ingest([str(first)], "m", store, SourceSettings(), CleaningConfig(min_chars=1))
    child = ingest([str(second)], "m", store, SourceSettings(), CleaningConfig(min_chars=1))
    return parent, child


def test_the_written_parts_read_back_as_parts_with_their_origin(tmp_path, file_store):
    parent, child = _two_versions(tmp_path, file_store)
    raw = v.read_manifest(file_store, "m", child.version)
    parts = v.resolve(file_store, "m", child.version).parts

    assert [p.entry() for p in parts] == raw["parts"]  # the typed form writes back byte for byte
    assert [p.inherited_from for p in parts] == [parent.version, None]
    assert [p.path.split("/")[0] for p in parts] == [parent.version, child.version]
    assert sum(p.rows for p in parts) == child.rows_total == 3
    assert "inherited_from" not in raw["parts"][1]  # only where it applies
    quarantine = Part.of(raw["quarantine"], "quarantine") if raw["quarantine"] else None
    assert quarantine is None or quarantine.path == f"{child.version}/quarantine.parquet"


def test_a_grandchild_keeps_the_version_that_wrote_each_part():
    part = Part(path="v1/part-00000.parquet", rows=2, sha256=SHA, bytes=10)
    assert part.inherited("v1").inherited_from == "v1"
    assert part.inherited("v1").inherited("v2").inherited_from == "v1"


@pytest.mark.parametrize("change, message", [
    ({"path": "../../models/x/weights.pt"}, r"parts\[0\]\.path.*not <version>/part-NNNNN\.parquet"),
    ({"path": "/etc/passwd"}, r"parts\[0\]\.path"),
    ({"sha256": "not-a-checksum"}, r"parts\[0\]\.sha256"),
    ({"rows": -1}, r"parts\[0\]\.rows"),
    ({"owner": "someone"}, r"parts\[0\]\.owner: Extra inputs are not permitted"),
])
def test_a_tampered_part_entry_is_refused_by_name_before_any_read(tmp_path, file_store, change, message):
    parent, _ = _two_versions(tmp_path, file_store)
    key = f"datasets/m/{parent.version}/manifest.json"
    manifest = json.loads(file_store.read_bytes(key))
    manifest["parts"][0].update(change)
    file_store.write_json(key, manifest)

    with pytest.raises(IntegrityError, match=rf"dataset m@{parent.version} manifest {message}"):
        v.read_table(file_store, v.resolve(file_store, "m", parent.version))
