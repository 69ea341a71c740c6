"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending the same POST
as soon as the previous answer arrived, for a fixed time. Runs in its own process on uvloop with
prebuilt request bytes, so that the client costs the shared cores as little as possible (threads
with http.client cost several times more per request and would measure the client).

    python -m bench.loadgen PORT PATH CLIENTS SECONDS BODY_FILE   -> one JSON line on stdout
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np


async def _client(port: int, request: bytes, stop_at: float, latencies: list[float], codes: dict[int, int]):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            code = int(head[9:12])
            codes[code] = codes.get(code, 0) + 1
    except (ConnectionError, asyncio.IncompleteReadError):
        codes[-1] = codes.get(-1, 0) + 1  # a dropped connection counts as an error
    finally:
        writer.close()


async def run(port: int, path: str, clients: int, seconds: float, body: bytes) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    codes: dict[int, int] = {}
    started = time.perf_counter()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(_client(port, request, stop_at, latencies, codes) for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "seconds": round(wall, 2), "requests": len(latencies),
            "errors": sum(n for code, n in codes.items() if code != 200), "rps": round(len(latencies) / wall),
            "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None}


def main() -> None:
    port, path, clients, seconds, body_file = sys.argv[1:6]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, only costs the client more
        pass
    with open(body_file, "rb") as handle:
        body = handle.read()
    print(json.dumps(asyncio.run(run(int(port), path, int(clients), float(seconds), body))))


if __name__ == "__main__":
    main()
