"""`make bench`: measured side by side in one run; results to bench/results/*.json and a table in
bench/README.md. Targets are stated next to each figure; nothing here is asserted in tests."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
RESULTS = ROOT / "results"
REPEATS = 2


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.child", *args], capture_output=True, text=True,
                         cwd=ROOT.parent, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(args[:2])}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def bench_ingest(sizes: list[int]) -> dict:
    from bench.synthetic import write_corpus

    rows = []
    for size in sizes:
        folder = WORK / f"corpus-{size // 1_000_000}m"
        print(f"ingest: {size:,} synthetic docs (generating once into {folder})", file=sys.stderr, flush=True)
        paths = [str(p) for p in write_corpus(str(folder), size)]
        # Alternate the two, best of REPEATS each: the machine's noise hits both sides alike.
        scans, hashes, ingests = [], [], []
        for _ in range(REPEATS):
            scans.append(_child("scan", "--format", "parquet", *paths))
            hashes.append(_child("hash", *paths))
            ingests.append(_child("ingest", "--store", str(WORK / "store"), *paths))
        scan = min(scans, key=lambda r: r["seconds"])
        hashed = min(hashes, key=lambda r: r["seconds"])
        ingest = min(ingests, key=lambda r: r["seconds"])
        row = {
            "docs": size, "format": "parquet",
            "ingest_docs_per_s": round(ingest["rows"] / ingest["seconds"]),
            "scan_rows_per_s": round(scan["rows"] / scan["seconds"]),
            "sha256_floor_docs_per_s": round(hashed["rows"] / hashed["seconds"]),
            "ratio": round((ingest["rows"] / ingest["seconds"]) / (scan["rows"] / scan["seconds"]), 3),
            "ingest_seconds": round(ingest["seconds"], 2), "scan_seconds": round(scan["seconds"], 2),
            "ingest_peak_rss_mib": round(ingest["peak_rss_mib"]),
            "scan_peak_rss_mib": round(scan["peak_rss_mib"]),
        }
        rows.append(row)
        print(f"  {row}", file=sys.stderr, flush=True)
    return {"bench": "ingest", "targets": {"ingest_docs_per_s": ">= 500000", "ratio": ">= 0.25",
                                          "ingest_peak_rss_mib_at_10m": "<= 1024"}, "results": rows}


def _environment() -> dict:
    return {"when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}


def write_readme(results: dict[str, dict]) -> None:
    lines = ["# Benchmarks", "", "Written by `make bench` (`python -m bench.run`); every ratio is measured side by "
             "side in the same run. Raw figures: `bench/results/*.json`.", ""]
    ingest = results.get("ingest")
    if ingest:
        env = ingest["environment"]
        lines += ["## Ingest + clean + version (synthetic documents, Parquet source, file store)", "",
                  f"Run {env['when']} on {env['cpus']} CPUs, Python {env['python']}; best of {REPEATS} alternating "
                  "runs each. Baseline: a raw pyarrow scan (`ParquetFile.iter_batches`, text and label columns) "
                  "of the same rows in the same run. Ingest reads, validates, normalizes, hashes (SHA-256 doc_id), "
                  "dedups, writes zstd Parquet parts and commits a version. Targets: "
                  ">= 500k docs/s, ratio >= 0.25, peak RSS <= 1 GiB at 10M.", "",
                  "| docs | ingest docs/s | raw scan rows/s | ratio | scan + SHA-256 only, docs/s | ingest s | "
                  "peak RSS MiB (ingest / scan) |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ingest["results"]:
            lines.append(f"| {r['docs']:,} | {r['ingest_docs_per_s']:,} | {r['scan_rows_per_s']:,} | {r['ratio']} | "
                         f"{r['sha256_floor_docs_per_s']:,} | {r['ingest_seconds']} | "
                         f"{r['ingest_peak_rss_mib']} / {r['scan_peak_rss_mib']} |")
        lines += ["", "The *scan + SHA-256 only* column reads the same rows and computes each `doc_id` and nothing "
                  "else: it bounds any ingest that gives every document a SHA-256 content id from Python on this "
                  "machine. The 0.25 ratio target is not met: the per-document hash alone is slower than a quarter "
                  "of the raw scan (compare the columns), so reaching it would need a compiled, multi-core hash "
                  "kernel or a weaker id. Peak RSS stays far under 1 GiB at 10M.", ""]
    (ROOT / "README.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000", help="ingest corpus sizes")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    WORK.mkdir(exist_ok=True)
    results = {}
    for name, fn in (("ingest", lambda: bench_ingest([int(s) for s in args.sizes.split(",")])),):
        result = fn()
        result["environment"] = _environment()
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        results[name] = result
    write_readme(results)
    print((ROOT / "README.md").read_text())


if __name__ == "__main__":
    main()
