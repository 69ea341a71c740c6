"""What TLS and encryption at rest cost the store: the embedded S3 server plain, over TLS, and over
TLS with SSE-S3 on every write, side by side in one run: many small objects (the audit log's and
the registry's JSON) and one large object (a model or a dataset part), written and read back."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from components.common.storage import open_store
from pipelines.s3server import EmbeddedS3

SMALL, SMALL_BYTES, LARGE_MIB = 300, 4096, 64


def _measure(tls: bool, encryption: str, folder: Path) -> dict:
    server = EmbeddedS3(tls=tls, encryption=encryption).start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        store = open_store("s3://conveyor/bench")
        payload = os.urandom(SMALL_BYTES)
        started = time.perf_counter()
        for i in range(SMALL):
            store.write_bytes(f"small/{i:04d}.json", payload)
        for i in range(SMALL):
            store.read_bytes(f"small/{i:04d}.json")
        small_s = time.perf_counter() - started
        big = folder / "big.bin"
        big.write_bytes(os.urandom(LARGE_MIB << 20))
        started = time.perf_counter()
        store.upload(str(big), "large.bin")
        store.download("large.bin", str(folder / "back.bin"))
        large_s = time.perf_counter() - started
        return {"tls": tls, "encryption": encryption, "small_objects_per_second": round(2 * SMALL / small_s),
                "large_mib_per_second": round(2 * LARGE_MIB / large_s, 1)}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def bench_store_security() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_measure(tls, enc, Path(tmp)) for tls, enc in ((False, "none"), (True, "none"), (True, "sse-s3"))]
    plain = rows[0]
    for row in rows:
        row["small_ratio"] = round(row["small_objects_per_second"] / plain["small_objects_per_second"], 2)
        row["large_ratio"] = round(row["large_mib_per_second"] / plain["large_mib_per_second"], 2)
    return {"bench": "store_security", "targets": {"ratio": "throughput of https + SSE-S3 vs plain http"},
            "small_objects": SMALL, "small_bytes": SMALL_BYTES, "large_mib": LARGE_MIB, "results": rows}
