"""Ingest: every row read is accepted or quarantined with its reason; versions are content-addressed."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from components.common.errors import InputError, NotFoundError
from components.dataset import versioning as v
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from tests.support.malformed import write_mail_folder, write_tabular_folder


def _quarantine(store, result) -> list[dict]:
    key = result.quarantine_uri[len(store.uri) + 1:]
    return pq.read_table(store.local_copy(key, "/tmp")).to_pylist() if result.quarantine_uri else []


def test_mail_folder_traps_are_all_accounted_for(tmp_path, file_store, cleaning):
    expected = write_mail_folder(tmp_path / "mail")
    result = ingest([str(tmp_path / "mail")], "mail", file_store, SourceSettings(), cleaning)

    assert result.rows_read == len(expected) == result.rows_accepted + result.rows_quarantined
    want = Counter(r for r in expected.values() if r)
    assert result.quarantine_reasons == dict(want)
    rows = _quarantine(file_store, result)
    assert all((r["source_uri"].startswith("file://") and r["detail"]) or r["reason"] in ("empty_text",)
               for r in rows)
    assert {r["reason"] for r in rows if r["raw"] is None} <= {"unreadable_file"}  # raw bytes kept

    table = v.read_table(file_store, v.resolve(file_store, "mail"))
    texts = dict(zip(table.column("source_uri").to_pylist(), table.column("text").to_pylist(), strict=True))
    by_name = {uri.rsplit("/", 1)[1]: text for uri, text in texts.items()}
    assert "Große Rabatte auf alle Artikel, nur heute! Klicken Sie hier für Details." in by_name["multipart-qp.eml"]
    assert "ignored because" not in by_name["multipart-qp.eml"]  # the plain part wins over HTML
    assert by_name["html-only.eml"].startswith("Deals") and "Buy\xa0now & save 50%" in by_name["html-only.eml"]
    assert "track()" not in by_name["html-only.eml"]
    assert "Voilà un message très spécial" in by_name["base64-latin1.eml"]
    assert "Привет, это письмо" in by_name["koi8.eml"]
    assert "broken-mime.eml" not in by_name  # quarantined by default: see the next test
    assert by_name["attachment-only.eml"] == "Quarterly figures attached for review"
    assert "Monday" in by_name["zipped.eml.gz"]
    assert set(table.column("label").to_pylist()) == {"ham", "spam"}

    # Which part of each accepted email its text came from, counted in the manifest.
    manifest = v.resolve(file_store, "mail").manifest["rows"]
    assert manifest["email_text_from"] == {"subject only": 1, "subject+html": 1, "subject+plain": 5}
    assert sum(manifest["email_text_from"].values()) == result.rows_accepted
    by_file = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows}
    assert by_file["subject-only.eml"]["detail"] == "3 chars, minimum 5 (text from subject only)"
    assert by_file["tiny.eml"]["detail"] == "2 chars, minimum 5 (text from plain)"


def test_mime_structure_defects_are_quarantined_or_accepted_and_counted(tmp_path, file_store, cleaning):
    """A multipart message whose boundary never appears would be read as its raw body: quarantined
    as broken_mime by default (naming the defects), or accepted with `mime_defects: accept` and
    counted by defect in the manifest; either way never silently."""
    write_mail_folder(tmp_path / "mail")
    result = ingest([str(tmp_path / "mail")], "mail", file_store, SourceSettings(), cleaning)
    broken = next(r for r in _quarantine(file_store, result) if r["source_uri"].endswith("/broken-mime.eml"))
    assert broken["reason"] == "broken_mime"
    assert broken["detail"].startswith("MultipartInvariantViolationDefect, StartBoundaryNotFoundDefect: ")
    assert broken["raw"].startswith(b"From: broken@example.com")

    accepted = ingest([str(tmp_path / "mail")], "mail2", file_store, SourceSettings(mime_defects="accept"), cleaning)
    assert accepted.rows_accepted == result.rows_accepted + 1
    rows = v.resolve(file_store, "mail2").manifest["rows"]
    assert rows["accepted_mime_defects"] == {"MultipartInvariantViolationDefect": 1, "StartBoundaryNotFoundDefect": 1}
    assert rows["email_text_from"]["subject+raw body"] == 1
    table = v.read_table(file_store, v.resolve(file_store, "mail2"))
    text = next(t for u, t in zip(table.column("source_uri").to_pylist(), table.column("text").to_pylist(),
                                  strict=True) if u.endswith("/broken-mime.eml"))
    assert "the text is still here" in text


def test_a_file_beside_the_label_folders_is_labelled_only_when_its_folder_is_mapped(tmp_path, file_store, cleaning):
    write_mail_folder(tmp_path / "mail")
    result = ingest([str(tmp_path / "mail")], "mail", file_store, SourceSettings(), cleaning)
    readme = next(r for r in _quarantine(file_store, result) if r["source_uri"].endswith("/README.txt"))
    assert readme["reason"] == "missing_label" and "source.label_map" in readme["detail"]
    assert readme["raw"].startswith(b"Notes on this corpus")

    # A folder of one label's files, named directly with its folder mapped (the bundled config's way)
    mapped = ingest([str(tmp_path / "mail")], "mail2", file_store, SourceSettings(label_map={"mail": "ham"}), cleaning)
    assert "missing_label" not in mapped.quarantine_reasons
    table = v.read_table(file_store, v.resolve(file_store, "mail2"))
    labels = dict(zip(table.column("source_uri").to_pylist(), table.column("label").to_pylist(), strict=True))
    assert next(label for uri, label in labels.items() if uri.endswith("/README.txt")) == "ham"


def test_tabular_traps_are_all_accounted_for(tmp_path, file_store, cleaning):
    expected = write_tabular_folder(tmp_path / "tab")
    result = ingest([str(tmp_path / "tab")], "tab", file_store, SourceSettings(), cleaning)

    assert result.rows_accepted == expected.pop(None)
    assert result.quarantine_reasons == expected
    assert result.rows_read == result.rows_accepted + result.rows_quarantined == 25
    rows = _quarantine(file_store, result)
    truncated = next(r for r in rows if r["reason"] == "truncated_record")
    assert truncated["raw"].startswith(b'"This quoted field never clo')
    assert "line 3" in truncated["detail"]
    mismatch = [r["detail"] for r in rows if r["reason"] == "schema_mismatch"]
    assert any("expected 2 columns, got 1" in d for d in mismatch)
    assert any("not valid JSON" in d for d in mismatch)
    undecodable = [r for r in rows if r["reason"] == "undecodable"]
    assert any("invalid UTF-8 at byte 3" in (r["detail"] or "") for r in undecodable)
    too_long = next(r for r in rows if r["reason"] == "too_long")
    assert too_long["detail"] == "30000 chars, maximum 20000" and len(too_long["raw"]) == 30_000


def test_same_input_twice_gives_same_version_and_writes_nothing(tmp_path, file_store, cleaning):
    write_mail_folder(tmp_path / "mail")
    first = ingest([str(tmp_path / "mail")], "mail", file_store, SourceSettings(), cleaning)
    keys_before = file_store.list("")
    second = ingest([str(tmp_path / "mail")], "mail", file_store, SourceSettings(), cleaning)

    assert first.new and not second.new
    assert second.version == first.version and second.parent == first.parent
    assert second.rows_accepted == 0 and second.rows_read == first.rows_read
    assert file_store.list("") == keys_before


def test_new_rows_make_a_child_snapshot_and_shuffling_does_not_change_the_id(tmp_path, file_store):
    cfg = CleaningConfig(min_chars=1)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows = [{"text": f"doc {i}", "label": "x" if i % 2 else "y"} for i in range(50)]
    a.write_text("\n".join(json.dumps(r) for r in rows))
    b.write_text("\n".join(json.dumps(r) for r in [*rows[::-1][:40], {"text": "new one", "label": "x"}]))

    first = ingest([str(a)], "d", file_store, SourceSettings(), cfg)
    child = ingest([str(b)], "d", file_store, SourceSettings(), cfg)
    assert child.new and child.parent == first.version
    assert child.rows_accepted == 1 and child.quarantine_reasons == {"duplicate_of_parent": 40}
    assert child.rows_total == 51
    manifest = v.read_manifest(file_store, "d", child.version)
    assert [p.get("inherited_from") for p in manifest["parts"]] == [first.version, None]
    assert v.read_table(file_store, v.resolve(file_store, "d", child.version)).num_rows == 51

    # The same rows in another order, as a fresh dataset: the same content id.
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(json.dumps(r) for r in rows[::-1]))
    again = ingest([str(shuffled)], "e", file_store, SourceSettings(), cfg)
    assert again.version == first.version


def test_changing_the_cleaning_config_changes_the_version(tmp_path, file_store):
    src = tmp_path / "x.csv"
    src.write_text("text,label\nhello there,a\ngeneral kenobi,b\n")
    one = ingest([str(src)], "c1", file_store, SourceSettings(), CleaningConfig(min_chars=1))
    two = ingest([str(src)], "c2", file_store, SourceSettings(), CleaningConfig(min_chars=2))
    assert one.version != two.version and one.rows_accepted == two.rows_accepted == 2


def test_a_crash_before_the_manifest_leaves_no_visible_version(tmp_path, file_store, monkeypatch):
    src = tmp_path / "x.csv"
    src.write_text("text,label\nhello there,a\ngeneral kenobi,b\n")
    real_write_json = file_store.write_json

    def crash(key, value):
        if key.endswith("manifest.json"):
            raise OSError("simulated crash while committing")
        return real_write_json(key, value)

    monkeypatch.setattr(file_store, "write_json", crash)
    with pytest.raises(OSError):
        ingest([str(src)], "crash", file_store, SourceSettings(), CleaningConfig())
    assert v.list_versions(file_store, "crash") == []
    with pytest.raises(NotFoundError, match="has no versions"):
        v.resolve(file_store, "crash")
    monkeypatch.undo()
    result = ingest([str(src)], "crash", file_store, SourceSettings(), CleaningConfig())
    assert result.new and [m["version"] for m in v.list_versions(file_store, "crash")] == [result.version]


def test_tampered_part_is_refused(tmp_path, file_store):
    from components.common.errors import IntegrityError

    src = tmp_path / "x.csv"
    src.write_text("text,label\nhello there,a\ngeneral kenobi,b\n")
    result = ingest([str(src)], "t", file_store, SourceSettings(), CleaningConfig())
    part = v.read_manifest(file_store, "t", result.version)["parts"][0]["path"]
    path = file_store.local_path(f"datasets/t/{part}")
    with open(path, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\x00")
    with pytest.raises(IntegrityError, match="sha256"):
        v.read_table(file_store, v.resolve(file_store, "t"))


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: (p / "cols.csv").write_text("body,label\nx,y\n") and p / "cols.csv", "no column 'text'"),
])
def test_unusable_input_is_one_clear_error_and_commits_nothing(tmp_path, file_store, make, message):
    with pytest.raises(InputError, match=message):
        ingest([str(make(tmp_path))], "bad", file_store, SourceSettings(), CleaningConfig())
    assert file_store.list("") == []


def test_s3_source_and_s3_store(tmp_path, s3_store):
    """Sources read from an S3 prefix (gzip'd too) into a version committed to S3."""
    import gzip

    from components.common.storage import open_store

    sources = open_store("s3://sources")
    sources.write_bytes("inbox/ham/a.eml", b"Subject: one\n\nfirst message body here\n")
    sources.write_bytes("inbox/spam/b.eml.gz", gzip.compress(b"Subject: two\n\nsecond message body here\n"))
    sources.write_bytes("inbox/spam/c.eml", b"Subject: three\n\nthird message body here\n")
    result = ingest(["s3://sources/inbox"], "s3data", s3_store, SourceSettings(), CleaningConfig())
    assert (result.rows_read, result.rows_accepted) == (3, 3)
    assert result.manifest_uri.startswith("s3://conveyor/")
    table = v.read_table(s3_store, v.resolve(s3_store, "s3data"))
    assert sorted(table.column("label").to_pylist()) == ["ham", "spam", "spam"]
    again = ingest(["s3://sources/inbox"], "s3data", s3_store, SourceSettings(), CleaningConfig())
    assert again.version == result.version and not again.new


def test_collections_cut_by_topic_quarantine_the_rest_as_not_selected(tmp_path, file_store):
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.executor import ingest

    path = tmp_path / "mixed.csv"
    path.write_text("text,label\nflight delayed again,neg\nbrady deflated the balls,neg\n"
                    "great flight crew,pos\nno topic at all here,pos\n")
    settings = SourceSettings(source_keywords={"airline": ["flight"], "football": ["brady"]},
                              select_sources=["airline"])
    result = ingest([str(path)], "mixed", file_store, settings, CleaningConfig())
    assert (result.rows_read, result.rows_accepted, result.rows_quarantined) == (4, 2, 2)
    assert result.quarantine_reasons == {"not_selected": 2}
    import pyarrow.parquet as pq

    quarantine = pq.read_table(result.quarantine_uri)
    assert sorted(quarantine.column("detail").to_pylist()) == [
        "source 'football' is not one of ['airline']", "source 'mixed' is not one of ['airline']"]


def test_keyword_rule_order_survives_the_pipeline_parameter_encoding():
    """First match wins, so the rules' order matters; KFP's Struct encoding sorts mapping keys."""
    from google.protobuf import json_format, struct_pb2

    from components.stages.ingest.config import SourceSettings

    settings = SourceSettings(source_keywords={"zebra": ["stripes"], "apple": ["iphone", "stripes"]})
    struct = struct_pb2.Struct()
    struct.update(settings.model_dump(mode="json"))  # what a KFP dict parameter becomes
    back = SourceSettings.model_validate(json_format.MessageToDict(struct))
    assert [name for name, _ in back.source_keywords] == ["zebra", "apple"]
