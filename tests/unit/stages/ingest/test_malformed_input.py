"""Bad input as users bring it: binary files under text names, spreadsheet exports with a byte-order
mark, rows nobody can read. Each is refused (a file named as a source) or quarantined (a file in a
folder) with a reason, never committed as an empty version, never a traceback; and the quarantined
rows can be looked at with `conveyor data quarantine`."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import pytest

from components.common.config import PROJECT_ROOT
from components.common.errors import InputError
from components.dataset import versioning as v
from components.dataset.quarantine import quarantined_rows
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest

ELF = shutil.which("ls") or "/bin/ls"  # a real ELF binary, as the issue saw it
BOM = b"\xef\xbb\xbf"


def conveyor(*args: str, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _elf() -> bytes:
    with open(ELF, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("name, content", [
    ("bin.csv", _elf()), ("bin.jsonl", _elf()), ("bin.txt", _elf()), ("bin.csv.gz", gzip.compress(_elf())),
    ("bin.jsonl.gz", gzip.compress(_elf())),
])
def test_a_binary_file_named_as_a_source_is_refused_whatever_its_name(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    out = conveyor("data", "ingest", str(tmp_path / name), "--dataset", "b", "--store", str(tmp_path / "st"))
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "binary content" in lines[0], out.stderr
    assert not (tmp_path / "st" / "datasets").exists()  # no 0-row version committed


def test_the_format_setting_does_not_make_binary_content_text(tmp_path, file_store):
    (tmp_path / "data.bin").write_bytes(_elf())
    with pytest.raises(InputError, match=r"binary content .* not csv as source.format says"):
        ingest([str(tmp_path / "data.bin")], "b", file_store, SourceSettings(format="csv"), CleaningConfig())


def test_binary_files_in_a_folder_are_quarantined_as_binary_content(tmp_path, file_store):
    folder = tmp_path / "src" / "ham"
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text("text,label\nhello there friend,ham\n")
    (folder / "bin.csv").write_bytes(_elf())
    (folder / "bin.jsonl.gz").write_bytes(gzip.compress(_elf()))
    (folder / "bin.txt").write_bytes(_elf())
    result = ingest([str(tmp_path / "src")], "b", file_store, SourceSettings(), CleaningConfig())
    assert result.rows_accepted == 1
    assert result.quarantine_reasons == {"binary_content": 3}
    rows = quarantined_rows(file_store, v.resolve(file_store, "b"))
    assert sorted(r["source_uri"].rsplit("/", 1)[1] for r in rows) == ["bin.csv", "bin.jsonl.gz", "bin.txt"]


def test_utf16_text_is_not_taken_for_binary(tmp_path, file_store):
    (tmp_path / "wide.csv").write_bytes("text,label\nhello there,ham\n".encode("utf-16"))
    result = ingest([str(tmp_path / "wide.csv")], "w", file_store, SourceSettings(encoding="utf-16"),
                    CleaningConfig())
    assert result.rows_accepted == 1


@pytest.mark.parametrize("name, content", [
    ("clean.csv", BOM + b"text,label\r\nhello there,ham\r\nbuy now cheap,spam\r\n"),
    # a malformed row sends the file to the exact reader (the regression: KeyError 'text')
    ("malformed.csv", BOM + b'text,label\nhello there,ham\n"never closed,spam\nbuy now cheap,spam\n'),
    ("extra.csv", BOM + b"text,label\nhello there,ham\nbuy now cheap,spam,extra\nthird row here,ham\n"),
    ("export.csv.gz", gzip.compress(BOM + b'text,label\nhello there,ham\n"never closed,spam\n')),
    ("lines.jsonl", BOM + b'{"text": "hello there", "label": "ham"}\n{"text": "buy now cheap", "label": "spam"}\n'),
    ("lines.jsonl.gz", gzip.compress(BOM + b'{"text": "hello there", "label": "ham"}\n')),
])
def test_a_byte_order_mark_is_encoding_not_data(tmp_path, file_store, name, content):
    (tmp_path / name).write_bytes(content)
    result = ingest([str(tmp_path / name)], "bom", file_store, SourceSettings(), CleaningConfig())
    table = v.read_table(file_store, v.resolve(file_store, "bom"))
    texts = table.column("text").to_pylist()
    assert "hello there" in texts and not any(t.startswith("\ufeff") for t in texts)
    assert result.rows_read == result.rows_accepted + result.rows_quarantined >= 1


def test_a_text_document_with_a_bom_keeps_no_bom(tmp_path, file_store):
    folder = tmp_path / "src" / "ham"
    folder.mkdir(parents=True)
    (folder / "note.txt").write_bytes(BOM + b"hello there, a plain note")
    ingest([str(tmp_path / "src")], "t", file_store, SourceSettings(), CleaningConfig())
    assert v.read_table(file_store, v.resolve(file_store, "t")).column("text").to_pylist() == [
        "hello there, a plain note"]


def test_an_undecodable_malformed_csv_row_is_quarantined_without_a_traceback(tmp_path):
    src = tmp_path / "inv.csv"
    src.write_bytes(b'text,label\nhello \xff\xfe there,ham\n"broken\xff,spam,x\nbuy now,spam\n')
    out = conveyor("data", "ingest", str(src), "--dataset", "inv", "--store", str(tmp_path / "st"))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
    result = json.loads(out.stdout)
    assert result["rows_read"] == 2 and result["quarantine_reasons"] == {"truncated_record": 1, "undecodable": 1}


def test_conveyor_data_quarantine_lists_rows_with_source_row_reason_and_the_row_a_duplicate_repeats(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text,label\nhello world one,ham\n,ham\nhello world one,spam\nsecond good row,spam\n"
                   "hello world one,ham\n")
    store = str(tmp_path / "st")
    assert conveyor("data", "ingest", str(src), "--dataset", "q", "--store", store).returncode == 0

    listed = conveyor("data", "quarantine", "q", "--store", store, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["empty_text"]["source_row"] == 2 and by_reason["empty_text"]["source_uri"].endswith("in.csv")
    duplicate = next(r for r in rows if r["reason"] == "duplicate" and r["source_row"] == 5)
    assert duplicate["duplicate_of"]["source_row"] == 1 and duplicate["duplicate_of"]["source_uri"].endswith("in.csv")
    assert "raw" not in duplicate  # the data itself only with --raw

    text = conveyor("data", "quarantine", "q", "--store", store, "--reason", "duplicate")
    assert text.returncode == 0
    assert "in.csv:5" in text.stdout and "same text as" in text.stdout and "in.csv:1" in text.stdout
    assert "empty_text" not in text.stdout

    raw = json.loads(conveyor("data", "quarantine", "q", "--store", store, "--json", "--raw").stdout)
    assert {r["raw"] for r in raw if r["reason"] == "duplicate"} == {"hello world one"}

    unknown = conveyor("data", "quarantine", "q", "--store", store, "--reason", "nosuch")
    assert unknown.returncode == 2 and "--reason nosuch" in unknown.stderr and "duplicate (2)" in unknown.stderr
