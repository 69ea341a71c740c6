"""Workers: any number of cleaning processes gives one process's version; their failures and limits."""

from __future__ import annotations

import os

import pytest

from components.common.storage import FileStore
from components.dataset import versioning as v
from components.stages.ingest.config import CleaningConfig, SourceSettings
from components.stages.ingest.executor import ingest
from tests.support.malformed import repeating_corpus, write_mail_folder, write_tabular_folder
from tests.support.version_outcome import outcome

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
