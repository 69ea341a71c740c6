"""The predictor in a real KServe model server process on loopback."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pyarrow as pa
import pytest

from components.stages.registry import store as registry
from components.stages.serve.infra import ServerProcess, http_json, validate_in_server
from tests.support.paths import ROOT
from tests.support.training_data import ingest_corpus, train_and_register


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from components.common.storage import FileStore

    tmp = tmp_path_factory.mktemp("serving")
    store = FileStore(str(tmp / "store"))
    version = ingest_corpus(tmp, store)
    card = train_and_register(store, version, "serve-1", alias="champion")
    limits = ["--log-sample-rate", "1", "--max-batch", "8", "--max-chars", "500"]
    with ServerProcess("toy-model@champion", store.uri, name="toy", extra=limits) as server:
        yield server, store, card


def test_v1_and_v2_answer_and_name_the_version(served):
    server, _store, card = served
    code, body = http_json(f"{server.url}/v1/models/toy:predict",
                           {"instances": ["free cash prize click", {"text": "project meeting agenda notes"}]})
    assert code == 200 and body["model_version"] == card["version"]
    assert [p["label"] for p in body["predictions"]] == ["spam", "ham"]
    assert abs(sum(body["predictions"][0]["probabilities"].values()) - 1) < 1e-5
    # No "id" in the v2 request: the response still gets one (the KServe pitfall is handled).
    code, body = http_json(f"{server.url}/v2/models/toy/infer",
                           {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["win a prize"]}]})
    assert code == 200 and body["id"] and body["model_version"] == card["version"]
    assert {o["name"] for o in body["outputs"]} == {"label", "probabilities"}


@pytest.mark.parametrize("path, body, message", [
    ("v1/models/toy:predict", {"instances": "not a list"}, 'Expected "instances" to be a list'),  # KServe's own check
    ("v1/models/toy:predict", {"instances": [42]}, "instances[0]: expected a string"),
    ("v1/models/toy:predict", {"instances": []}, "no instances"),
    ("v1/models/toy:predict", {"instances": ["x"] * 9}, "batch of 9 texts exceeds the limit of 8"),
    ("v1/models/toy:predict", {"instances": ["x" * 501]}, "501 characters exceeds the limit of 500"),
    ("v1/models/toy:predict", {"texts": ["hi"]}, 'expected a JSON object {"instances"'),
    ("v2/models/toy/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
     "expected datatype BYTES"),
])
def test_bad_input_is_a_400_with_a_message(served, path, body, message):
    server, _store, _card = served
    code, answer = http_json(f"{server.url}/{path}", body)
    assert code == 400, answer
    assert message in answer.get("error", "")


def test_the_readmes_curl_is_answered_and_a_form_body_is_refused_with_415(served):
    """The README's curl names the JSON Content-Type and is answered. A bare `curl -d` sends
    application/x-www-form-urlencoded, a type any web page can POST without a CORS preflight: 415,
    and the message says what to send."""
    server, _store, card = served
    curl = shutil.which("curl")
    assert curl, "curl is needed: the README's first request is a curl"
    readme = (ROOT / "README.md").read_text()
    assert "-H 'Content-Type: application/json'" in readme.split("conveyor serve spam-classifier@production")[1][:300]
    out = subprocess.run([curl, "-s", "-w", "\n%{http_code}", f"{server.url}/v1/models/toy:predict",
                          "-H", "Content-Type: application/json", "-d", '{"instances": ["free cash prize click"]}'],
                         capture_output=True, text=True, timeout=30).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "200" and json.loads(body)["model_version"] == card["version"], out
    out = subprocess.run([curl, "-s", "-w", "\n%{http_code}", f"{server.url}/v1/models/toy:predict",
                          "-d", '{"instances": ["free cash prize click"]}'], capture_output=True, text=True,
                         timeout=30).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "415" and "Content-Type: application/json" in json.loads(body)["error"], out


def test_explain_gives_exact_occlusion_effects_and_top_tokens_per_class(served):
    server, _store, card = served
    text = "Free cash prize for the team meeting"
    code, body = http_json(f"{server.url}/v1/models/toy:explain", {"instances": [text]})
    assert code == 200 and body["model_version"] == card["version"]
    [answer] = body["explanations"]
    assert answer["label"] == "spam" and answer["complete"] and answer["explained_tokens"] == 7
    assert {t["token"] for t in answer["top_tokens"]["spam"][:3]} <= {"free", "cash", "prize"}
    assert {t["token"] for t in answer["top_tokens"]["ham"][:2]} <= {"team", "meeting", "for", "the"}
    # exact, in both directions, against two real predicts: removing a token moves the class
    # log-odds by minus its effect ("prize" pushes towards spam, "meeting" away from it)
    assert answer["effect"].startswith("class log-odds with the token minus without it")
    _code, full = http_json(f"{server.url}/v1/models/toy:predict", {"instances": [text]})

    def log_odds(body):
        p = body["predictions"][0]["probabilities"]["spam"]
        return math.log(p) - math.log(1 - p)

    effects = {t["token"]: t["effect"]["spam"] for t in answer["tokens"]}
    assert effects["prize"] > 0 > effects["meeting"]
    for token in ("prize", "meeting"):
        _code, without = http_json(f"{server.url}/v1/models/toy:predict",
                                   {"instances": [" ".join(w for w in text.split() if w.lower() != token)]})
        assert log_odds(without) - log_odds(full) == pytest.approx(-effects[token], abs=1e-3), token
    assert answer["probabilities"]["spam"] == pytest.approx(full["predictions"][0]["probabilities"]["spam"], abs=1e-6)


@pytest.mark.parametrize("body, message", [
    ({"instances": ["x"] * 17}, "batch of 17 texts exceeds the limit of 16"),
    ({"instances": [3]}, "instances[0]: expected a string"),
    ({"instances": ["   "]}, "empty text"),
])
def test_explain_bad_input_is_a_400_with_a_message(served, body, message):
    server, _store, _card = served
    code, answer = http_json(f"{server.url}/v1/models/toy:explain", body)
    assert code == 400, answer
    assert message in answer.get("error", "")


def test_metrics_carry_status_codes_version_and_role(served):
    server, _store, card = served
    http_json(f"{server.url}/v1/models/toy:predict", {"instances": ["free prize"]})
    http_json(f"{server.url}/v1/models/toy:predict", {"instances": 7})
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    labels = f'model="toy-model",role="stable",version="{card["version"]}"'  # labels print sorted
    assert re.search(r'conveyor_requests_total\{code="200",env="production",' + re.escape(labels) + r"\} [1-9]", text)
    assert re.search(r'conveyor_request_errors_total\{code="400",env="production",' + re.escape(labels) + r"\} [1-9]",
                     text)
    assert re.search(r'conveyor_predictions_total\{env="production",label="spam",' + re.escape(labels) + r"\} [1-9]",
                     text)
    assert "conveyor_request_latency_seconds_bucket" in text
    http_json(f"{server.url}/v1/models/toy:explain", {"instances": ["free prize"]})
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert re.search(r'conveyor_explain_latency_seconds_count\{env="production",' + re.escape(labels) + r"\} [1-9]",
                     text)


def _kserve_predict_counts(server) -> list[float]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    series = r'^request_{}_seconds_count\{{model_name="toy"\}} ([0-9.e+]+)$'
    return [float(re.search(series.format(step), text, re.MULTILINE)[1])
            for step in ("preprocess", "predict", "postprocess")]


def test_v1_keeps_kserve_latency_series_errors_and_cloudevents(served):
    """v1 :predict has its own lean route: KServe's three latency histograms still count every
    predict, a body that is not JSON is KServe's 400, and CloudEvents (built and read by the
    CloudEvents SDK) are still KServe's: a binary event is answered with one."""
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent, from_http

    server, _store, card = served
    http_json(f"{server.url}/v1/models/toy:predict", {"instances": ["free cash prize click"]})
    before = _kserve_predict_counts(server)
    http_json(f"{server.url}/v1/models/toy:predict", {"instances": ["free cash prize click"]})
    assert _kserve_predict_counts(server) == [n + 1 for n in before]

    request = urllib.request.Request(f"{server.url}/v1/models/toy:predict", data=b"{not json", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # nosec B310: this test's own loopback server
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"].startswith("Unrecognized request format")

    event = CloudEvent({"type": "com.example.predict", "source": "tests"}, {"instances": ["free cash prize click"]})
    headers, body = to_binary(event)
    request = urllib.request.Request(f"{server.url}/v1/models/toy:predict", data=body, method="POST",
                                     headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:  # nosec B310: this test's own loopback server
        answer = from_http(dict(resp.headers), resp.read())
    assert answer["type"] == "io.kserve.inference.response" and answer["source"] == "io.kserve.inference.toy"
    data = answer.data if isinstance(answer.data, dict) else json.loads(answer.data)
    assert data["model_version"] == card["version"] and data["predictions"][0]["label"] == "spam"

    headers, body = to_structured(event)  # its JSON as an application/json body: KServe reads the data
    code, plain = http_json(f"{server.url}/v1/models/toy:predict", json.loads(body))
    assert code == 200 and plain["predictions"][0]["label"] == "spam"


def test_requests_are_logged_to_the_store_in_batches(served):
    import pyarrow.parquet as pq

    server, store, card = served
    http_json(f"{server.url}/v1/models/toy:predict", {"instances": ["logged text one", "logged text two"]})
    deadline = time.monotonic() + 15
    rows = []
    while time.monotonic() < deadline and not any(r["text"] == "logged text two" for r in rows):
        rows = []
        for key in store.list(f"inference-logs/toy-model/{card['version']}/"):
            rows += pq.read_table(store.local_path(key)).to_pylist()
        time.sleep(0.5)
    assert any(r["text"] == "logged text two" and r["role"] == "stable" for r in rows)


def test_infra_validation_matches_offline_predictions(served):
    _server, store, card = served
    loaded = registry.load(store, "toy-model", card["version"])
    texts = ["free cash now", "agenda for the team meeting", "click to win credit", "draft report review"]
    from components.stages.evaluate.core import predict_proba

    probs, _ms = predict_proba(loaded, pa.array(texts))
    labels = [loaded.featurizer.labels[i] for i in probs.argmax(axis=1)]
    ok = validate_in_server(f"toy-model@{card['version']}", store.uri, texts, labels, probs, card["version"])
    assert ok["passed"] and ok["matching_share"] == 1.0, ok
    wrong = validate_in_server(f"toy-model@{card['version']}", store.uri, texts, labels[::-1], probs[::-1],
                               card["version"])
    assert not wrong["passed"] and "differ from offline predictions" in wrong["detail"]
    assert np.isfinite(ok["v1_ms"])


def test_serves_a_version_folder_as_kserve_storage_initializer_leaves_it(two_versions, tmp_path):
    """The ServingRuntime runs `conveyor serve /mnt/models` with CONVEYOR_SERVED_NAME={{.Name}}: the
    folder holds the version's files; they are verified against the card before serving."""
    from components.stages.serve.infra import ServerProcess, http_json

    store, stable, *_ = two_versions
    folder = tmp_path / "mnt-models"
    folder.mkdir()
    for file in ("model_card.json", "weights.pt", "featurizer.json"):
        (folder / file).write_bytes(store.read_bytes(f"models/toy-model/{stable}/{file}"))
    with ServerProcess(str(folder), None, name="spam") as server:
        code, body = http_json(f"{server.url}/v1/models/spam:predict", {"instances": ["free cash prize now"]})
    assert code == 200 and body["model_version"] == stable
    (folder / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="does not match the model card"):
        ServerProcess(str(folder), None, name="spam", startup_timeout=30)


def test_chaos_errors_are_spread_evenly_so_a_rehearsal_cannot_pass_by_luck(two_versions):
    store, stable, *_ = two_versions
    with ServerProcess(f"toy-model@{stable}", store.uri, name="chaos", extra=["--chaos-error-rate", "0.3"]) as server:
        codes = [http_json(f"{server.url}/v1/models/chaos:predict", {"instances": ["free cash prize"]})[0]
                 for _ in range(40)]
    assert codes.count(500) == 12 and codes.count(200) == 28  # exactly 30%
    assert all(500 in codes[i:i + 4] for i in range(len(codes) - 3))  # every 4 in a row hold a 500
