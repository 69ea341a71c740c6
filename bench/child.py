"""One measurement in a fresh process, so peak RSS (VmHWM) belongs to that measurement alone."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    """User + system CPU of this process and its waited-for children (the ingest workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def scan(paths: list[str], fmt: str) -> int:
    """The baseline: Arrow reads the same rows (text and label) in batches and does nothing else."""
    rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=["text", "label"]):
                rows += batch.num_rows
    else:
        import pyarrow.csv as pacsv

        for path in paths:
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=8 << 20),
                                    parse_options=pacsv.ParseOptions(newlines_in_values=True))
            for batch in reader:
                rows += batch.num_rows
    return rows


def hash_floor(paths: list[str]) -> int:
    """Read the same rows and compute each doc_id (SHA-256) and nothing else: the ceiling of any
    ingest that gives every document a SHA-256 content id from Python."""
    import pyarrow.parquet as pq

    from components.dataset.schema import content_digests

    rows = 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=["text", "label"]):
            content_digests(batch.column(0))
            rows += batch.num_rows
    return rows


def ingest(paths: list[str], store_dir: str, workers: int | None = None) -> tuple[int, str]:
    from components.common.storage import FileStore
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.executor import ingest as run

    shutil.rmtree(store_dir, ignore_errors=True)
    result = run(paths, "bench", FileStore(store_dir), SourceSettings(), CleaningConfig(), workers=workers)
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    if workers and result.workers != workers:
        raise SystemExit(f"asked for {workers} workers, ingest used {result.workers}")
    print(json.dumps(result.phase_seconds), file=sys.stderr)
    return result.rows_read, result.version


def spark_ingest(paths: list[str], store_dir: str, master: str) -> tuple[int, float]:
    """The Spark engine on the same files; returns (rows, session start seconds), the session's
    start-up (JVM, ~6-15 s) not counted in the measured time."""
    from components.common.spark import SparkSettings, session
    from components.common.storage import FileStore
    from components.stages.ingest.config import CleaningConfig, SourceSettings
    from components.stages.ingest.spark_engine import ingest_spark

    shutil.rmtree(store_dir, ignore_errors=True)
    started = time.perf_counter()
    spark = session(SparkSettings(master=master, shuffle_partitions=16))
    spark.range(1).count()  # the JVM and one task up before the clock starts
    startup = time.perf_counter() - started
    global _CLOCK
    _CLOCK = time.perf_counter()
    result = ingest_spark(paths, "bench", FileStore(store_dir), SourceSettings(), CleaningConfig(), spark=spark)
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    print(json.dumps(result.phase_seconds), file=sys.stderr)
    return result.rows_read, startup


def features(store_dir: str, workdir: str) -> int:
    """Split and featurize (hashing, the default) the latest version in `store_dir`, streamed
    through local files as the pipeline's split and featurize steps do."""
    from components.common.storage import FileStore
    from components.dataset import versioning as v
    from components.stages.featurize.config import FeaturesConfig
    from components.stages.featurize.core import SPLITS
    from components.stages.featurize.executor import featurize_files
    from components.stages.split.config import SplitConfig
    from components.stages.split.executor import split_to_files

    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    store = FileStore(store_dir)
    ref = v.resolve(store, "bench")
    rows = {n: f"{workdir}/{n}-rows.parquet" for n in SPLITS}
    split_to_files(store, ref, SplitConfig(), rows, workdir=workdir)
    _featurizer, sizes = featurize_files(rows, FeaturesConfig(), {"dataset": "bench", "version": ref.version},
                                         {n: f"{workdir}/{n}.parquet" for n in SPLITS})
    shutil.rmtree(workdir, ignore_errors=True)
    return sum(n for n, _ids in sizes.values())


_CLOCK: float | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["scan", "hash", "ingest", "spark", "features"])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--format", default="parquet")
    parser.add_argument("--store", default="bench/work/store")
    parser.add_argument("--workers", type=int, default=1, help="ingest: data.workers (1: this process cleans)")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_intermixed_args()
    # Import everything before the clock starts: start-up is not throughput.
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    import components.stages.ingest.executor  # noqa: F401
    started, cpu_started, extra = time.perf_counter(), cpu_seconds(), {}
    if args.mode == "scan":
        rows = scan(args.paths, args.format)
    elif args.mode == "hash":
        rows = hash_floor(args.paths)
    elif args.mode == "spark":
        rows, startup = spark_ingest(args.paths, args.store, args.master)
        json.dump({"rows": rows, "seconds": time.perf_counter() - _CLOCK, "startup_seconds": startup,
                   "peak_rss_mib": peak_rss_mib()}, sys.stdout)
        return
    elif args.mode == "features":
        rows = features(args.store, str(Path(args.store).parent / "features"))
    else:
        rows, version = ingest(args.paths, args.store, args.workers)
        extra["version"] = version
    seconds = time.perf_counter() - started
    json.dump({"rows": rows, "seconds": seconds, "peak_rss_mib": peak_rss_mib(), **extra,
               "cpu_seconds": cpu_seconds() - cpu_started}, sys.stdout)


if __name__ == "__main__":
    main()
