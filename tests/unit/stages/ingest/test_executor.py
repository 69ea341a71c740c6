"""Ingest: every row read is accepted or quarantined with its reason; versions are content-addressed."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.common.config import PROJECT_ROOT
from components.common.errors import InputError, NotFoundError
from components.common.storage import FileStore
from components.dataset import versioning as v
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.dedup import KeyIndex
from components.stages.ingest.executor import ingest
from components.stages.ingest.mime import email_to_text, html_to_text, looks_like_email
from components.stages.ingest.readers import sniff_format
from tests.support.malformed import repeating_corpus, write_mail_folder, write_tabular_folder
from tests.support.version_outcome import outcome


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


def test_key_index_matches_a_python_set():
    rng = np.random.default_rng(1)
    index, seen = KeyIndex(), set()
    for _ in range(30):
        batch = rng.integers(0, 5000, size=200, dtype=np.uint64)
        assert index.contains(batch).tolist() == [int(k) in seen for k in batch]
        index.add(batch)
        seen.update(int(k) for k in batch)
    assert len(index.runs) < 10  # runs are merged, not one per batch
    assert set(index.all_keys().tolist()) == seen


def test_html_to_text_drops_scripts_and_keeps_structure():
    text = html_to_text("<html><style>x{}</style><p>One&amp;Two</p><script>evil()</script><div>Three</div></html>")
    assert text.split() == ["One&Two", "Three"]


def test_email_subject_encoded_words_and_charset_supersets():
    raw = b"Subject: =?iso-8859-1?q?caf=E9?=\nContent-Type: text/plain; charset=gb2312\n\n" + \
        "中文 testing 碁".encode("gbk")  # 碁 is GBK, not GB2312: decoded through the superset
    assert email_to_text(raw) == "café\n\n中文 testing 碁"


@pytest.mark.parametrize("name, head, fmt", [
    ("a.csv", b"text,label\n", "csv"), ("a.csv.gz", b"\x1f\x8b", "csv"), ("a.jsonl", b"{}", "jsonl"),
    ("x", b'{"text": 1}', "jsonl"), ("a.parquet", b"PAR1", "parquet"), ("m.txt", b"From x\nSubject: y\n", "email"),
    ("m.txt", b"Received: a\nSubject: b\n\nbody", "email"), ("n.txt", b"just some words", "text"),
    ("img.png", b"\x89PNG\x00\x00", "unknown"),
])
def test_sniff_format(name, head, fmt):
    assert sniff_format(name, head) == fmt


def test_looks_like_email_rejects_prose_with_a_colon():
    assert not looks_like_email(b"Note: this is prose.\nIt has a colon but no headers\n")


def test_a_parquet_file_of_many_row_groups_is_read_whole_with_its_row_numbers(tmp_path, file_store):
    """Read one row group at a time (bounded memory): every row, in order, numbered from 1."""
    import pyarrow as pa

    texts = [f"document number {i} with enough words" for i in range(1000)]
    pq.write_table(pa.table({"text": texts, "label": ["ham", "spam"] * 500}), tmp_path / "many.parquet",
                   row_group_size=128)
    assert pq.ParquetFile(tmp_path / "many.parquet").num_row_groups == 8
    result = ingest([str(tmp_path / "many.parquet")], "rg", file_store, SourceSettings(), CleaningConfig(),
                    batch_rows=100)
    assert (result.rows_read, result.rows_accepted) == (1000, 1000)
    table = v.read_table(file_store, v.resolve(file_store, "rg"))
    by_row = dict(zip(table.column("source_row").to_pylist(), table.column("text").to_pylist(), strict=True))
    assert by_row == {i + 1: text for i, text in enumerate(texts)}


# --- bounded-memory dedup: any budget gives the in-RAM answer --------------------------------------


@pytest.mark.parametrize("budget", [7, 64])
def test_any_dedup_budget_gives_the_in_memory_version(tmp_path, cleaning, budget):
    """Windows of `budget` keys spill to disk; duplicates spanning windows, and repeats of a parent
    that itself spilled, are found after the last batch. Same id, counts, rows and quarantine."""
    src = tmp_path / "src"
    src.mkdir()
    repeating_corpus(src / "first.csv", 300, seed=1)
    outcomes = {}
    for name, keys in (("ram", 10**9), ("spill", budget)):
        store = FileStore(str(tmp_path / name))
        first = ingest([str(src / "first.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50,
                       part_rows=40, dedup_budget_keys=keys)
        repeating_corpus(src / "second.csv", 300, seed=2)  # overlaps the first: parent duplicates
        second = ingest([str(src / "second.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50,
                        part_rows=40, dedup_budget_keys=keys)
        (src / "second.csv").unlink()
        outcomes[name] = (outcome(store, first), outcome(store, second))
    ram, spill = outcomes["ram"], outcomes["spill"]
    assert ram[1]["reasons"]["duplicate_of_parent"] > 0 and ram[0]["reasons"]["duplicate"] > 0
    assert spill == ram
    stripped = [q for q in spill[0]["quarantine"] if q[2].startswith(b" ")]
    assert stripped, "a repeat with its own whitespace keeps its raw bytes in the quarantine"


@pytest.mark.parametrize("folder", ["mail", "tab"])
def test_dedup_budget_identity_on_the_malformed_set(tmp_path, cleaning, folder):
    (write_mail_folder if folder == "mail" else write_tabular_folder)(tmp_path / folder)
    runs = [ingest([str(tmp_path / folder)], "m", FileStore(str(tmp_path / f"s{keys}")), SourceSettings(),
                   cleaning, batch_rows=3, dedup_budget_keys=keys) for keys in (10**9, 2)]
    assert outcome(FileStore(str(tmp_path / "s1000000000")), runs[0]) == \
        outcome(FileStore(str(tmp_path / "s2")), runs[1])


def test_dedup_budget_identity_on_the_bundled_corpus(tmp_path):
    from components.composition.config import load_config

    cfg = load_config()
    sources = [str(PROJECT_ROOT / p) for p in cfg.data.reference]
    if not all(os.path.isdir(p) for p in sources):
        pytest.skip("bundled corpus not fetched (make data)")
    results = {keys: ingest(sources, "sa", FileStore(str(tmp_path / str(keys))), cfg.data.source, cfg.cleaning,
                            dedup_budget_keys=keys) for keys in (10**9, 500)}
    ram, spill = (outcome(FileStore(str(tmp_path / str(k))), results[k]) for k in (10**9, 500))
    assert ram["reasons"].get("duplicate", 0) > 0  # the corpus has real repeats
    assert spill == ram


# --- data.workers: parallel cleaning gives one worker's version ------------------------------------


def test_any_number_of_workers_gives_one_workers_version_on_a_repeating_corpus(tmp_path, cleaning):
    """Repeats within and across batches and of the parent, spilled windows: same id, counts,
    parts (bytes), quarantine and rows for 1 and 3 worker processes."""
    src = tmp_path / "src"
    src.mkdir()
    repeating_corpus(src / "first.csv", 300, seed=1)
    outcomes = {}
    for workers in (1, 3):
        store = FileStore(str(tmp_path / f"w{workers}"))
        runs = [ingest([str(src / "first.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50, part_rows=40,
                       dedup_budget_keys=64, workers=workers, parallel_min_bytes=0)]
        repeating_corpus(src / "second.csv", 300, seed=2)
        runs.append(ingest([str(src / "second.csv")], "d", store, SourceSettings(), cleaning, batch_rows=50,
                           part_rows=40, dedup_budget_keys=64, workers=workers, parallel_min_bytes=0))
        (src / "second.csv").unlink()
        assert [r.workers for r in runs] == [workers, workers]
        outcomes[workers] = [outcome(store, r) for r in runs]
        outcomes[workers].append([v.read_manifest(store, "d", r.version)["parts"] for r in runs])
    assert outcomes[1][1]["reasons"]["duplicate_of_parent"] > 0 and outcomes[1][0]["reasons"]["duplicate"] > 0
    assert outcomes[3] == outcomes[1]


@pytest.mark.parametrize("folder", ["mail", "tab"])
def test_any_number_of_workers_gives_one_workers_version_on_the_malformed_set(tmp_path, cleaning, folder):
    (write_mail_folder if folder == "mail" else write_tabular_folder)(tmp_path / folder)
    runs = {w: ingest([str(tmp_path / folder)], "m", FileStore(str(tmp_path / f"w{w}")), SourceSettings(), cleaning,
                      batch_rows=3, workers=w, parallel_min_bytes=0) for w in (1, 2)}
    assert runs[2].workers == 2
    one, two = (outcome(FileStore(str(tmp_path / f"w{w}")), runs[w]) for w in (1, 2))
    assert one == two
    assert len(one["reasons"]) >= 5  # the set exercises many reasons, each decided in a worker


def test_a_small_input_is_cleaned_in_process(tmp_path, cleaning):
    write_tabular_folder(tmp_path / "tab")
    result = ingest([str(tmp_path / "tab")], "m", FileStore(str(tmp_path / "s")), SourceSettings(), cleaning,
                    workers=4)
    assert result.workers == 1  # starting workers would cost more than the input


def test_workers_keep_a_bounded_number_of_batches_in_flight():
    from components.stages.ingest.workers import prepared_in_order

    pulled = []

    def batches():
        for i in range(40):
            pulled.append(i)
            yield _raw_batch([f"batch {i} row {j}" for j in range(10)], i)

    seen = []
    for raw, prepared in prepared_in_order(batches(), CleaningConfig(), SourceSettings(), workers=2, depth=4):
        seen.append(len(pulled) - len(seen))  # batches read but not yet handed out
        assert len(prepared.ok_idx) == raw.num_rows == 10
    assert len(seen) == 40 and max(seen) <= 4 + 2  # the queue, the one being sent, the one handed out


def test_an_error_in_a_worker_is_raised_in_the_ingest_process():
    import pyarrow as pa

    from components.stages.ingest.workers import prepared_in_order

    good = _raw_batch(["a fine row"], 0)
    bad = good.set_column(0, "text", pa.array([12345], pa.int64()))  # no cast from int64 to text
    answers = prepared_in_order(iter([good, bad]), CleaningConfig(), SourceSettings(), workers=2)
    assert len(next(answers)[1].ok_idx) == 1  # the batch before it is answered
    with pytest.raises(pa.ArrowNotImplementedError):
        next(answers)


class _HalfPicklable(Exception):
    def __init__(self):
        super().__init__("bad batch")
        self.payload = b"x" * 200_000  # pickled, and written out, before the pickler reaches the hook
        self.hook = lambda: None  # a lambda does not pickle


def test_a_worker_answers_an_error_it_cannot_pickle_with_a_readable_one_and_goes_on(monkeypatch):
    """The answer is pickled whole before it is written, so a failed pickle leaves nothing half
    written in the pipe and the next batch's answer still reads."""
    import io
    import pickle
    import types

    from components.stages.ingest import workers

    real = workers.prepare
    calls = []

    def prepare(raw, *args, **kwargs):
        calls.append(raw)
        if len(calls) == 1:
            raise _HalfPicklable()
        return real(raw, *args, **kwargs)

    source = io.BytesIO()
    for item in ((CleaningConfig(), SourceSettings()), _raw_batch(["first"], 0), _raw_batch(["second row"], 1)):
        pickle.dump(item, source)
    source.seek(0)
    sink = io.BytesIO()
    monkeypatch.setattr(workers, "prepare", prepare)
    monkeypatch.setattr(workers.sys, "stdin", types.SimpleNamespace(buffer=source))
    monkeypatch.setattr(workers.sys, "stdout", types.SimpleNamespace(buffer=sink))
    workers._serve()
    sink.seek(0)
    kind, error = pickle.load(sink)
    assert kind == "error" and isinstance(error, RuntimeError) and "bad batch" in str(error)
    kind, answer = pickle.load(sink)
    assert kind == "ok" and len(answer.ok_idx) == 1


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_usable_cores_follow_a_pods_cpu_limit(tmp_path, layout):
    from components.stages.ingest.workers import resolve_workers, usable_cores

    def limit(quota: str) -> None:  # as the kubelet writes limits.cpu into the pod's cgroup
        if layout == "v2":
            (tmp_path / "cpu.max").write_text(f"{quota} 100000\n")
        else:
            (tmp_path / "cpu").mkdir(exist_ok=True)
            (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n" if quota == "max" else f"{quota}\n")
            (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")

    affinity = len(os.sched_getaffinity(0))
    limit("150000")  # limits.cpu: 1500m
    assert usable_cores(str(tmp_path)) == min(affinity, 2)
    limit("50000")  # 500m: still one worker
    assert usable_cores(str(tmp_path)) == 1
    limit("max")
    assert usable_cores(str(tmp_path)) == affinity
    assert usable_cores(str(tmp_path / "missing")) == affinity
    assert resolve_workers(3) == 3 and resolve_workers(0) == resolve_workers(None) == usable_cores()


def _raw_batch(texts: list[str], batch: int):
    import pyarrow as pa

    from components.stages.ingest.readers import RAW_SCHEMA

    n = len(texts)
    columns = {f.name: pa.nulls(n, f.type) for f in RAW_SCHEMA}
    columns.update(text=pa.array([t.encode() for t in texts], RAW_SCHEMA.field("text").type),
                   label=pa.array(["ham"] * n, RAW_SCHEMA.field("label").type),
                   source_row=pa.array(range(batch * n + 1, batch * n + n + 1), RAW_SCHEMA.field("source_row").type))
    return pa.RecordBatch.from_pydict(columns, schema=RAW_SCHEMA)
