"""schemathesis over the predictor's OpenAPI document (`make test-slow`): generated requests, valid
and invalid against the documented schemas, to every documented operation of a live `conveyor
serve`. None may be a server error, every error is the project's {"error": message}, and the
server still answers good requests afterwards."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from components.stages.serve.infra import ServerProcess, http_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(two_versions):
    store, stable, *_ = two_versions
    with ServerProcess(f"toy-model@{stable}", store.uri, name="toy",
                       extra=["--max-batch", "8", "--max-chars", "500"]) as server:
        yield server


def _check(case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (case.as_curl_command(), body)
        assert len(body["error"]) <= 1003, case.as_curl_command()  # bounded: never the request echoed back


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_generated_request_is_a_server_error(fuzzed, mode):
    # Driven by hand rather than with schemathesis.pytest.from_fixture, which reads a pytest-internal
    # attribute that pytest 9 no longer has.
    api = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {"/v2/models/{model_name}/infer", "/v1/models/{model_name}:explain"} <= {op.path for op in operations}
    tried = 0
    for operation in operations:
        if mode is schemathesis.GenerationMode.NEGATIVE and not (operation.body or operation.path_parameters):
            continue  # nothing in it can be made invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            nonlocal tried
            tried += 1
            _check(case)

        fuzz()
    print(f"schemathesis {mode.value}: {tried} requests over {len(operations)} operations")
    assert tried >= 60, tried


def test_the_server_still_answers_after_the_fuzzing(fuzzed):
    code, answer = http_json(f"{fuzzed.url}/v1/models/toy:predict", {"instances": ["free cash prize"]})
    assert code == 200 and answer["predictions"][0]["label"], answer
    assert http_json(f"{fuzzed.url}/v2/health/ready")[0] == 200
