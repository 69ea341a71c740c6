"""`:explain` latency: one client, one text per request, next to `:predict` on the same text and
server in the same run, for a short, a medium and a long text. Occlusion costs at most
max_explain_tokens + 1 forward rows per text, so explain / predict is bounded by that, whatever
the text; the long text shows the bound doing its work."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from bench.serving import TEXT, bench_model

MAX_EXPLAIN_TOKENS = 64  # the predictor's default (conveyor serve --max-explain-tokens)


def _texts() -> dict[str, str]:
    rng = random.Random(5)
    words = TEXT.replace(",", "").split() + [f"w{i}" for i in range(2000)]
    return {"short (13 tokens)": TEXT,
            "medium (150 tokens)": " ".join(rng.choice(words) for _ in range(150)),
            "long (1,500 tokens)": " ".join(rng.choice(words) for _ in range(1500))}


def _timed(client, path: str, text: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        code, body = client.post(path, {"instances": [text]})
        out.append((time.perf_counter() - started) * 1000)
        if code != 200:
            raise RuntimeError(f"{path}: {code} {body}")
    return out


def bench_explain(work: Path, requests: int = 200) -> dict:
    from components.stages.serve.infra import KeepAliveClient, ServerProcess

    store, card = bench_model(work, "explain-bench")
    rows = []
    with ServerProcess(f"bench-model@{card['version']}", store.uri, name="bench",
                       extra=["--max-explain-tokens", str(MAX_EXPLAIN_TOKENS)]) as server:
        client = KeepAliveClient(server.port)
        for label, text in _texts().items():
            _timed(client, "/v1/models/bench:explain", text, 10)  # warm-up
            n = requests if len(text) < 2000 else requests // 4
            predict = _timed(client, "/v1/models/bench:predict", text, n)
            explain = _timed(client, "/v1/models/bench:explain", text, n)
            _code, answer = client.post("/v1/models/bench:explain", {"instances": [text]})
            e = answer["explanations"][0]
            p50 = {k: float(np.percentile(v, 50)) for k, v in (("predict", predict), ("explain", explain))}
            rows.append({"text": label, "requests": n, "distinct_tokens": e["distinct_tokens"],
                         "explained_tokens": e["explained_tokens"],
                         "predict_p50_ms": round(p50["predict"], 2),
                         "explain_p50_ms": round(p50["explain"], 2),
                         "explain_p99_ms": round(float(np.percentile(explain, 99)), 2),
                         "explain_over_predict": round(p50["explain"] / p50["predict"], 1),
                         "bound": e["explained_tokens"] + 1})
        client.connection.close()
    return {"bench": "explain", "max_explain_tokens": MAX_EXPLAIN_TOKENS, "results": rows,
            "targets": {"explain_over_predict": "<= explained tokens + 1 (the occlusion bound)",
                        "long_text_explain_p99_ms": "<= 250"}}


if __name__ == "__main__":
    print(json.dumps(bench_explain(Path("bench/work")), indent=2))
