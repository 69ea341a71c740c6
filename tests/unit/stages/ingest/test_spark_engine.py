"""The Spark engine (`local[2]`) and the in-process engine give the same version: id, row
accounting, per-reason counts, accepted rows and quarantined rows."""

from __future__ import annotations

import os

import pytest

from components.common.config import PROJECT_ROOT
from components.common.storage import FileStore
from components.dataset import versioning as v
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from tests.support.malformed import repeating_corpus, write_mail_folder, write_tabular_folder
from tests.support.version_outcome import outcome, quarantine_rows

pytest.importorskip("pyspark")


def _both(tmp_path, spark, sources, settings, cleaning, dataset="d", **kw):
    from components.stages.ingest.spark_engine import ingest_spark

    local, distributed = FileStore(str(tmp_path / "local")), FileStore(str(tmp_path / "spark"))
    a = ingest(sources, dataset, local, settings, cleaning, **kw)
    b = ingest_spark(sources, dataset, distributed, settings, cleaning, spark=spark, **kw)
    return (local, a), (distributed, b)


@pytest.mark.parametrize("folder", ["mail", "tab"])
def test_spark_gives_the_in_process_version_on_the_malformed_set(tmp_path, spark, cleaning, folder):
    (write_mail_folder if folder == "mail" else write_tabular_folder)(tmp_path / folder)
    (ls, a), (ss, b) = _both(tmp_path, spark, [str(tmp_path / folder)], SourceSettings(), cleaning)
    assert b.new and sum(b.quarantine_reasons.values()) == b.rows_quarantined > 0
    assert outcome(ss, b) == outcome(ls, a)


def test_spark_dedups_first_occurrence_and_against_the_parent(tmp_path, spark, cleaning):
    """Repeats in every file and across files, rows that differ only in whitespace (the
    quarantine keeps each one's own bytes), then a child version overlapping its parent."""
    from components.stages.ingest.spark_engine import ingest_spark

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        repeating_corpus(src / f"f{i}.csv", 120, seed=i)
    (ls, a), (ss, b) = _both(tmp_path, spark, [str(src)], SourceSettings(), cleaning, part_rows=50)
    assert a.quarantine_reasons["duplicate"] > 0
    assert outcome(ss, b) == outcome(ls, a)

    repeating_corpus(tmp_path / "next.csv", 200, seed=9)
    a2 = ingest([str(tmp_path / "next.csv")], "d", ls, SourceSettings(), cleaning)
    b2 = ingest_spark([str(tmp_path / "next.csv")], "d", ss, SourceSettings(), cleaning, spark=spark)
    assert a2.quarantine_reasons["duplicate_of_parent"] > 0
    assert outcome(ss, b2) == outcome(ls, a2)

    # The same input again is the same version, and Spark writes nothing.
    before = ss.list("")
    again = ingest_spark([str(tmp_path / "next.csv")], "d", ss, SourceSettings(), cleaning, spark=spark)
    assert not again.new and again.version == b2.version and ss.list("") == before


def test_spark_gives_the_in_process_version_on_the_bundled_corpus(tmp_path, spark):
    from components.composition.config import load_config

    cfg = load_config()
    sources = [str(PROJECT_ROOT / p) for p in cfg.data.reference]
    if not all(os.path.isdir(p) for p in sources):
        pytest.skip("bundled corpus not fetched (make data)")
    (ls, a), (ss, b) = _both(tmp_path, spark, sources, cfg.data.source, cfg.cleaning, dataset="sa")
    assert a.rows_read == 3000
    assert outcome(ss, b) == outcome(ls, a)


def test_spark_names_a_bad_source_like_the_in_process_engine(tmp_path, spark):
    from components.common.errors import InputError
    from components.stages.ingest.spark_engine import ingest_spark

    with pytest.raises(InputError, match="no such file or folder"):
        ingest_spark([str(tmp_path / "missing")], "d", FileStore(str(tmp_path / "s")), SourceSettings(),
                     CleaningConfig(), spark=spark)


def test_a_big_parquet_file_is_split_across_tasks_and_still_keeps_the_first_occurrence(tmp_path, spark, cleaning):
    """One file of many row groups becomes several Spark units; repeats across row groups (so
    across tasks) keep the row that comes first in the file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from components.stages.ingest.readers import discover
    from components.stages.ingest.spark_engine import _units

    repeating_corpus(tmp_path / "rows.csv", 400, seed=3)
    pq.write_table(pacsv.read_csv(tmp_path / "rows.csv"), tmp_path / "rows.parquet", row_group_size=25)
    units = _units(discover([str(tmp_path / "rows.parquet")], SourceSettings()), SourceSettings(), 2)
    assert len(units) > 1 and all(a >= 0 for _, a, _ in units)
    (ls, a), (ss, b) = _both(tmp_path, spark, [str(tmp_path / "rows.parquet")], SourceSettings(), cleaning)
    assert a.quarantine_reasons["duplicate"] > 50
    assert outcome(ss, b) == outcome(ls, a)
    assert v.resolve(ss, "d").manifest["formats"] == {"parquet": 1}


def test_quarantine_raw_false_withholds_the_bytes_in_both_engines_and_keeps_the_version(tmp_path, spark, cleaning):
    """The quarantine still names every refused row's reason, file and row, but not its bytes; the
    accepted rows and the version id are those of quarantine_raw: true."""
    write_mail_folder(tmp_path / "mail")
    (tmp_path / "rep").mkdir()
    repeating_corpus(tmp_path / "rep" / "rows.csv", 300, seed=3)  # duplicates: moved rows too
    sources = [str(tmp_path / "mail"), str(tmp_path / "rep")]
    kept = ingest(sources, "d", FileStore(str(tmp_path / "kept")), SourceSettings(), cleaning)
    withheld_cfg = cleaning.model_copy(update={"quarantine_raw": False})
    (ls, a), (ss, b) = _both(tmp_path, spark, sources, SourceSettings(), withheld_cfg)
    assert a.version == b.version == kept.version and a.rows_quarantined > 0
    for store, result in ((ls, a), (ss, b)):
        rows = quarantine_rows(store, result)
        assert len(rows) == result.rows_quarantined
        assert all(r["raw"] is None and r["reason"] and r["source_uri"] for r in rows)
        assert v.resolve(store, "d", result.version).manifest["cleaning"]["quarantine_raw"] is False
    assert outcome(ss, b) == outcome(ls, a)
