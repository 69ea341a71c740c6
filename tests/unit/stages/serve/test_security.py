"""The predictor's transport security and authentication, checked with clients no one here wrote:
curl (--cacert, --cert), NVIDIA's tritonclient over SSL, and KServe's InferenceRESTClient."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import ssl
import subprocess
import sys

import pytest

from components.common.errors import InputError
from components.stages.serve.infra import ServerProcess, http_json
from components.stages.serve.security import ClientAuth, ServerSecurity, read_token_file
from pipelines.certs import make_pki

TOKEN = "tok-" + "s3cr3t-v4lue-" * 2  # recognisable: searched for in the server's output


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(two_versions, pki):
    """TLS and a data-plane token."""
    store, stable, *_ = two_versions
    auth = ClientAuth(token=TOKEN, ca_file=pki.ca)
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy", auth=auth,
                       tls=(pki.server.cert, pki.server.key)) as server:
        yield server, stable


@pytest.fixture(scope="module")
def mutual(two_versions, pki):
    """Mutual TLS: the client must present a certificate the run's CA signed."""
    store, stable, *_ = two_versions
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy",
                       auth=ClientAuth(ca_file=pki.ca, client_cert=pki.client.cert, client_key=pki.client.key),
                       tls=(pki.server.cert, pki.server.key), extra=["--tls-client-ca", pki.ca]) as server:
        yield server


def _curl(*args: str) -> tuple[str, str]:
    curl = shutil.which("curl")
    assert curl, "curl is needed for these tests"
    done = subprocess.run([curl, "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, _, code = done.stdout.rpartition("\n")
    return code, body


def _infer_body(*texts: str) -> str:
    return json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]})


def test_curl_with_the_runs_ca_and_the_token_gets_predictions(secured, pki):
    server, stable = secured
    assert server.url.startswith("https://")
    code, body = _curl("--cacert", pki.ca, "-H", f"Authorization: Bearer {TOKEN}", "-H",
                       "Content-Type: application/json", "-d", '{"instances": ["free cash prize"]}',
                       f"{server.url}/v1/models/toy:predict")
    assert code == "200" and json.loads(body)["model_version"] == stable, body
    # without the CA curl refuses the server (it is not in the system store)
    code, _ = _curl("-H", f"Authorization: Bearer {TOKEN}", f"{server.url}/v2/models/toy")
    assert code == "000"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-of-enough-length", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN}x", f"bearer {TOKEN}"])
def test_the_data_plane_refuses_a_missing_or_wrong_token_with_401(secured, pki, header):
    server, _ = secured
    headers = ["-H", "Content-Type: application/json"] + (["-H", f"Authorization: {header}"] if header else [])
    for path, body in (("/v1/models/toy:predict", '{"instances": ["hi"]}'),
                       ("/v1/models/toy:explain", '{"instances": ["hi"]}'),
                       ("/v2/models/toy/infer", _infer_body("hi"))):
        code, answer = _curl("--cacert", pki.ca, *headers, "-D", "-", "-d", body, f"{server.url}{path}")
        assert code == "401", (path, answer)
        assert 'www-authenticate: bearer realm="conveyor"' in answer.lower(), answer
        assert TOKEN not in answer
    code, _ = _curl("--cacert", pki.ca, *headers, f"{server.url}/v2/models/toy")  # metadata too
    assert code == "401"


def test_health_and_metrics_stay_open_for_kubelet_and_prometheus(secured, pki):
    server, _ = secured
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/toy/ready", "/v1/models/toy", "/metrics"):
        code, body = _curl("--cacert", pki.ca, f"{server.url}{path}")
        assert code == "200", (path, body)


def test_refusals_are_counted_and_the_token_never_reaches_the_log(secured, pki):
    server, stable = secured
    _curl("--cacert", pki.ca, "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {TOKEN}-no",
          "-d", '{"instances": ["hi"]}', f"{server.url}/v1/models/toy:predict")
    code, metrics = _curl("--cacert", pki.ca, f"{server.url}/metrics")
    assert code == "200"
    assert any(line.startswith("conveyor_requests_total{") and 'code="401"' in line and stable in line
               for line in metrics.splitlines()), "a 401 on a predict path is counted like any answer"
    assert TOKEN not in server.output()


def test_a_plain_http_request_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving(secured, pki):
    server, _ = secured
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/v2/health/ready")
        status = connection.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError):
        status = None  # the server closes the connection: no TLS record, no answer
    finally:
        connection.close()
    assert status in (None, 400)  # never a 200 over plain HTTP
    code, _ = http_json(f"{server.url}/v2/health/ready", auth=server.auth)
    assert code == 200


def test_tritonclient_over_ssl_with_the_token(secured, pki):
    import numpy as np
    import tritonclient.http as triton

    server, stable = secured
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}", ssl=True,
                                          ssl_context_factory=lambda: ssl.create_default_context(cafile=pki.ca))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert client.is_server_ready()  # open
        text = triton.InferInput("text", [2], "BYTES")
        text.set_data_from_numpy(np.array([b"free cash prize now", b"team meeting at noon"], dtype=object),
                                 binary_data=True)
        result = client.infer("toy", [text], headers=headers)
        assert result.get_response()["model_version"] == stable
        assert str(result.as_numpy("label")[0]) == "spam"
        with pytest.raises(triton.InferenceServerException) as refused:
            client.infer("toy", [text])
        assert refused.value.status() == "401"
    finally:
        client.close()


def test_kserves_inference_rest_client_over_tls_with_the_token(secured, pki):
    import httpx
    from kserve.inference_client import InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    server, _ = secured

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30,
                                                           verify=ssl.create_default_context(cafile=pki.ca)))
        tensor = InferInput("text", [1], "BYTES", ["free cash prize now"])
        request = InferRequest(model_name="toy", infer_inputs=[tensor])
        try:
            answer = await client.infer(server.url, request, model_name="toy",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await client.infer(server.url, request, model_name="toy")
            return answer, refused.value.response.status_code
        finally:
            await client._client.aclose()

    answer, refused = asyncio.run(run())
    assert answer.model_name == "toy" and answer.outputs[0].data == ["spam"]  # (it drops model_version)
    assert refused == 401


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(mutual, pki, tmp_path):
    other = make_pki(tmp_path / "other", ca_name="Someone else's CA")
    url = f"{mutual.url}/v2/health/ready"
    code, _ = _curl("--cacert", pki.ca, "--cert", pki.client.cert, "--key", pki.client.key, url)
    assert code == "200"
    code, _ = _curl("--cacert", pki.ca, url)
    assert code == "000"  # no certificate: the handshake fails
    code, _ = _curl("--cacert", pki.ca, "--cert", other.client.cert, "--key", other.client.key, url)
    assert code == "000"  # a certificate from another CA: refused
    auth = ClientAuth(ca_file=pki.ca, client_cert=pki.client.cert, client_key=pki.client.key)
    code, body = http_json(f"{mutual.url}/v1/models/toy:predict", {"instances": ["free prize"]}, auth=auth)
    assert code == 200, body
    code, _ = http_json(f"{mutual.url}/v2/health/ready", auth=auth)
    assert code == 200  # and the server still answers after the refused handshakes


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/jsonx", None])
def test_a_body_route_refuses_anything_but_json_with_415(served_plain, content_type):
    """A web page can POST these (and a typeless body) without a CORS preflight; a typeless body
    from a browser carries Origin, while tritonclient's (no Origin) is served."""
    server = served_plain
    for path, body in (("/v2/models/toy/infer", _infer_body("free prize")),
                       ("/v1/models/toy:predict", '{"instances": ["free prize"]}'),
                       ("/v1/models/toy:explain", '{"instances": ["free prize"]}')):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        headers = {"Content-Type": content_type} if content_type else {"Origin": "https://evil.example"}
        connection.request("POST", path, body.encode(), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        assert response.status == 415, (path, content_type, answer)
        assert "application/json" in answer["error"]
    code, _ = http_json(f"{server.url}/v2/models/toy/infer", json.loads(_infer_body("free prize")))
    assert code == 200
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/v2/models/toy/infer", _infer_body("free prize").encode(), {})
    assert connection.getresponse().status == 200  # no type, no Origin: tritonclient's JSON requests
    connection.close()


@pytest.fixture(scope="module")
def served_plain(two_versions):
    store, stable, *_ = two_versions
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy") as server:
        yield server


def test_serve_refuses_bad_security_settings_naming_the_file(pki, tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(InputError, match="at least 16 characters") as caught:
        read_token_file(str(short))
    assert "abc" not in str(caught.value)
    spaced = tmp_path / "spaced"
    spaced.write_text("two words in this token file\n")
    with pytest.raises(InputError, match="one line"):
        read_token_file(str(spaced))
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")  # as `kubectl create secret --from-file` keeps it
    assert read_token_file(str(good)) == TOKEN
    with pytest.raises(InputError, match="no such file"):
        read_token_file(str(tmp_path / "missing"))
    other = make_pki(tmp_path / "other")
    with pytest.raises(InputError, match="not a matching PEM certificate and key"):
        ServerSecurity(tls_cert=pki.server.cert, tls_key=other.server.key)
    with pytest.raises(InputError, match="go together"):
        ServerSecurity(tls_cert=pki.server.cert)
    assert TOKEN not in repr(ServerSecurity(auth_token=TOKEN)) and TOKEN not in repr(ClientAuth(token=TOKEN))
    # the CLI: exit code 2 (bad input), one line naming the file, no traceback
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "toy-model",
                           "--auth-token-file", str(short)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr and str(short) in done.stderr, done.stderr



def test_metrics_can_have_their_own_token(two_versions, tmp_path):
    store, stable, *_ = two_versions
    metrics_token = "metrics-" + "ab12" * 5
    (tmp_path / "metrics-token").write_text(metrics_token)
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy",
                       extra=["--metrics-token-file", str(tmp_path / "metrics-token")]) as server:
        code, _ = _curl(f"{server.url}/metrics")
        assert code == "401"
        code, body = _curl("-H", f"Authorization: Bearer {metrics_token}", f"{server.url}/metrics")
        assert code == "200" and "# HELP" in body
        code, _ = _curl("-H", "Content-Type: application/json", "-d", '{"instances": ["hi"]}',
                        f"{server.url}/v1/models/toy:predict")
        assert code == "200"  # no data-plane token configured: predict stays open
