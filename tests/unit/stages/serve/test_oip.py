"""The predictor against clients and requests no one here wrote: NVIDIA's tritonclient for the Open
Inference Protocol (JSON and binary), and a list of malformed requests that must all be 4xx,
counted on /metrics, and leave the server answering good requests."""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import urllib.request

import numpy as np
import pytest

from components.stages.serve.infra import ServerProcess


@pytest.fixture(scope="module")
def served(two_versions):
    store, stable, *_ = two_versions  # the canary tests' session models: no training of its own
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy",
                       extra=["--max-batch", "8", "--max-chars", "500"]) as server:
        yield server, {"version": stable}


def _raw(server, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body, headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def _counter(server, name, code, version):
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = (rf'{name}\{{code="{code}",env="production",model="toy-model",role="stable",version="{version}"\}} '
               r"([0-9.e+]+)")
    return sum(float(m) for m in re.findall(pattern, text))


def _bytes_tensor(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def _binary(header: dict, tail: bytes, length: str | None = None):
    head = json.dumps(header).encode()
    return head + tail, {"Content-Type": "application/octet-stream",
                         "Inference-Header-Content-Length": length if length is not None else str(len(head))}


def _bin_input(size, dtype="BYTES", shape=(1,)):
    return {"inputs": [{"name": "text", "datatype": dtype, "shape": list(shape),
                        "parameters": {"binary_data_size": size}}]}


def _json(doc):
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def _text(*data, shape=None, name="text", dtype="BYTES", **extra):
    return {"inputs": [{"name": name, "datatype": dtype, "shape": shape if shape is not None else [len(data)],
                        "data": list(data)}], **extra}


one = _bytes_tensor(b"free prize")
MALFORMED = {
    # JSON bodies
    "not json": (b"{nope", {"Content-Type": "application/json"}),
    "json array": _json([1, 2]),
    "no inputs": _json({}),
    "inputs not a list": _json({"inputs": "text"}),
    "empty inputs": _json({"inputs": []}),
    "input not an object": _json({"inputs": [7]}),
    "input without name": _json({"inputs": [{"datatype": "BYTES", "shape": [1], "data": ["x"]}]}),
    "unknown datatype": _json(_text("x", dtype="STRING")),
    "FP32 input": _json(_text(1.0, dtype="FP32")),
    "wrong input name": _json(_text("x", name="nosuch")),
    "two inputs": _json({"inputs": _text("x")["inputs"] * 2}),
    "shape bigger than data": _json(_text("x", shape=[3])),
    "negative shape": _json(_text("x", shape=[-2])),
    "huge shape": _json(_text("x", shape=[99999999999])),
    "shape not a list": _json(_text("x", shape="1")),
    "shape of strings": _json(_text("x", shape=["1"])),
    "2-d shape": _json(_text("a", "b", shape=[1, 2])),
    "no data": _json({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]}),
    "number in BYTES": _json(_text(42)),
    "null in BYTES": _json(_text(None)),
    "empty text": _json(_text("")),
    "blank text": _json(_text("   \n\t")),
    "lone surrogate": (b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["\\ud800 x"]}]}',
                       {"Content-Type": "application/json"}),
    "too many texts": _json(_text(*["x"] * 9)),
    "text too long": _json(_text("x" * 501)),
    "unknown output": _json(_text("x", outputs=[{"name": "nosuch"}])),
    "outputs not a list": _json(_text("x", outputs="label")),
    "id not a string": _json(_text("x", id=5)),
    "parameters not an object": _json({"inputs": [{**_text("x")["inputs"][0], "parameters": [1]}]}),
    # binary extension
    "header length not a number": _binary(_bin_input(len(one)), one, length="abc"),
    "header length negative": _binary(_bin_input(len(one)), one, length="-5"),
    "header length past the body": _binary(_bin_input(len(one)), one, length="100000"),
    "header length cuts the json": _binary(_bin_input(len(one)), one, length="10"),
    "binary size smaller than data": _binary(_bin_input(len(one) - 3), one),
    "binary size larger than body": _binary(_bin_input(len(one) + 50), one),
    "binary size not a number": _binary(_bin_input("12"), one),
    "binary size negative": _binary(_bin_input(-1), one),
    "element length past the end": _binary(_bin_input(8), struct.pack("<I", 99) + b"abcd"),
    "length prefix cut off": _binary(_bin_input(2), b"\x05\x00"),
    "9-byte FP32 tensor": _binary(_bin_input(9, dtype="FP32", shape=(2,)), b"\x00" * 9),
    "non-UTF-8 element": _binary(_bin_input(len(_bytes_tensor(b"\xff\xfe"))), _bytes_tensor(b"\xff\xfe")),
    "binary data without size": _binary({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]}, one),
    "binary shape mismatch": _binary(_bin_input(len(one), shape=(2,)), one),
    "binary body not json": (b"\x00\x01garbage", {"Content-Type": "application/octet-stream",
                                                  "Inference-Header-Content-Length": "9"}),
}


def test_malformed_requests_are_4xx_counted_and_harmless(served):
    server, card = served
    before_4xx = _counter(server, "conveyor_request_errors_total", "400", card["version"])
    answers = {}
    for case, (body, headers) in MALFORMED.items():
        code, data = _raw(server, "POST", "/v2/models/toy/infer", body, headers)
        answers[case] = code
        assert 400 <= code < 500, f"{case}: {code} {data[:300]!r}"
        error = json.loads(data)["error"]
        assert isinstance(error, str) and error and len(data) < 2000, (case, data[:300])
    assert len(MALFORMED) >= 40
    good = _json(_text("free prize now", "meeting at noon"))
    code, data = _raw(server, "POST", "/v2/models/toy/infer", *good)
    assert code == 200 and len(json.loads(data)["outputs"][0]["data"]) == 2
    # every refusal reached the counter the canary reads; none of them was a 5xx
    after_4xx = _counter(server, "conveyor_request_errors_total", "400", card["version"])
    assert after_4xx - before_4xx == sum(1 for c in answers.values() if c == 400)
    assert _counter(server, "conveyor_requests_total", "500", card["version"]) == 0


def test_errors_raised_outside_the_model_are_counted_too(served):
    server, card = served
    before = _counter(server, "conveyor_requests_total", "400", card["version"])
    # refused by KServe's own decode, before the model sees it
    _raw(server, "POST", "/v1/models/toy:predict", b"{not json", {"Content-Type": "application/json"})
    code, data = _raw(server, "POST", "/v1/models/toy:predict", json.dumps({"instances": "x"}).encode(),
                      {"Content-Type": "application/json"})
    assert code == 400 and "error" in json.loads(data)
    assert _counter(server, "conveyor_requests_total", "400", card["version"]) - before == 2


def test_tritonclient_json_and_binary_infer_metadata_and_versions(served):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    server, card = served
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("toy")
    meta = client.get_model_metadata("toy")
    assert meta["versions"] == [card["version"]]
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    classes = next(o for o in meta["outputs"] if o["name"] == "probabilities")["parameters"]["classes"]
    assert sorted(classes) == ["ham", "spam"]
    texts = np.array([b"win a free prize now", b"minutes of the meeting"], dtype=np.object_)
    for binary in (False, True):
        tensor = triton.InferInput("text", [2], "BYTES")
        tensor.set_data_from_numpy(texts, binary_data=binary)
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer("toy", [tensor], outputs=outputs, model_version=card["version"])
        probs = result.as_numpy("probabilities")
        assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5), binary
        assert result.as_numpy("label") is None  # only what was asked for
        assert result.get_response()["model_version"] == card["version"]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("toy", [tensor], model_version="someotherversion")
    with pytest.raises(InferenceServerException, match="empty text"):
        bad = triton.InferInput("text", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b""], dtype=np.object_))
        client.infer("toy", [bad])


def test_the_model_cannot_be_unloaded_over_http_and_stays_ready(served):
    server, _card = served
    for verb in ("unload", "load"):
        code, data = _raw(server, "POST", f"/v2/repository/models/toy/{verb}")
        assert code == 404, (verb, data)
    assert _raw(server, "GET", "/v2/health/ready")[0] == 200
    code, data = _raw(server, "POST", "/v2/models/toy/infer", *_json(_text("still here")))
    assert code == 200, data


def _outside_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: picks the outgoing interface, sends nothing
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_serve_binds_loopback_only(served):
    server, _card = served
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((address, server.port)) != 0, f"reachable on {address}:{server.port}"
    assert _raw(server, "GET", "/v2/health/live")[0] == 200


def test_a_body_without_the_header_is_all_json_and_binary_tensors_decode():
    from components.stages.serve import oip

    plain = oip.parse_request(json.dumps(_text("a", "b")).encode(), {})
    assert [t.data for t in plain.inputs] == [["a", "b"]] and plain.outputs is None
    body, headers = _binary({**_bin_input(len(_bytes_tensor(b"h\xc3\xa9", b"x")), shape=(2,)),
                             "outputs": [{"name": "label"}]}, _bytes_tensor(b"h\xc3\xa9", b"x"))
    parsed = oip.parse_request(body, headers)
    assert parsed.inputs[0].data == ["hé", "x"] and parsed.outputs == ["label"]
    fp32, headers = _binary(_bin_input(8, dtype="FP32", shape=(2,)), struct.pack("<2f", 1.5, -2.0))
    assert oip.parse_request(fp32, headers).inputs[0].data == [1.5, -2.0]
    fp16, headers = _binary(_bin_input(2, dtype="FP16"), np.array([1.5], "<f2").tobytes())
    assert oip.parse_request(fp16, headers).inputs[0].data == [1.5]
    bf16, headers = _binary(_bin_input(2, dtype="BF16"), struct.pack("<H", 0x3FC0))  # upper half of FP32 1.5
    assert oip.parse_request(bf16, headers).inputs[0].data == [1.5]


def test_health_follows_the_model():
    from types import SimpleNamespace

    import fastapi
    from fastapi.testclient import TestClient
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane

    from components.stages.serve.server import ConveyorRESTServer

    model = SimpleNamespace(name="toy", version="v1", ready=False, loaded=None, unloaded_on_request=False)
    rest = ConveyorRESTServer.__new__(ConveyorRESTServer)  # routes only: no socket, no uvicorn
    rest.model, rest.dataplane, rest.model_repository_extension = model, DataPlane(ModelRepository()), None
    rest.repository_token = None
    app = fastapi.FastAPI()
    rest._register_endpoints(app)
    client = TestClient(app)
    assert client.get("/v2/health/live").status_code == 503
    assert client.get("/v2/health/ready").status_code == 503
    model.loaded, model.ready = object(), True
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_versions_in_the_query_follow_the_path_rule(served):
    server, card = served
    served_version = card["version"]
    assert _raw(server, "GET", f"/v2/models/toy/ready?model_version={served_version}")[0] == 200
    code, body = _raw(server, "POST", f"/v2/models/toy/infer?model_version={served_version}", *_json(_text("hi")))
    assert code == 200 and json.loads(body)["model_version"] == served_version
    for path in ("/v2/models/toy/ready?model_version=other", "/v2/models/toy?model_version=other",
                 "/v2/models/nosuch/ready?model_version=1", "/v2/models/nosuch/versions/1/ready"):
        code, body = _raw(server, "GET", path)
        assert code == 404 and "not served here" in json.loads(body)["error"], (path, body)
    code, body = _raw(server, "POST", "/v2/models/toy/infer?model_version=other", *_json(_text("hi")))
    assert code == 404, body


def test_kserves_own_rest_client_v1_and_v2(served):
    import asyncio

    import httpx
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    server, card = served

    async def calls():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        try:
            assert await v2.is_server_live(server.url) and await v2.is_server_ready(server.url)
            assert await v2.is_model_ready(server.url, "toy")
            text = InferInput("text", [2], "BYTES")
            text.set_data_from_numpy(np.array(["free cash prize", "meeting at noon"], dtype=object))
            answer = await v2.infer(server.url, InferRequest("toy", [text]), model_name="toy")
            labels = {o.name: o for o in answer.outputs}["label"].data
            # (its response parser drops model_version: InferResponse.from_bytes never reads it)
            assert len(labels) == 2 and answer.model_name == "toy" and answer.id
            one = await v1.infer(server.url, {"instances": ["free cash prize"]}, model_name="toy")
            assert one["predictions"][0]["label"] == labels[0] and one["model_version"] == card["version"]
            empty = InferInput("text", [1], "BYTES")
            empty.set_data_from_numpy(np.array([""], dtype=object))
            with pytest.raises(httpx.HTTPStatusError, match="empty text") as refused:  # our message reaches it
                await v2.infer(server.url, InferRequest("toy", [empty]), model_name="toy")
            assert refused.value.response.status_code == 400
        finally:
            await v2.close()
            await v1.close()

    asyncio.run(calls())
