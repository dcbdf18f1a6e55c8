"""Schemathesis against the live server's OpenAPI schema: generated requests never get a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from server_process import Server

from lmlab.models import DEFAULT_LM


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error():
    # --max-tokens-limit keeps every accepted generation short; larger asks get a 400
    server = Server("--embedding-model", "", "--max-tokens-limit", "4", "--parallel", "4")
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],  # report the failing case, no shrinking
            )
            def check(case):
                if isinstance(case.body, dict):  # reach past the model lookup, into handlers
                    case.body["model"] = DEFAULT_LM
                response = case.call(base_url=server.url, timeout=60)
                assert response.status_code < 500, (case.path, response.text)
                if response.status_code >= 400:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}

            check()
    finally:
        server.stop()
