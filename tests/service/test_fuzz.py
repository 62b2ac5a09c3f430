"""Schemathesis fuzz of the OpenAPI schema: whatever a client sends, the service answers without a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.service.conftest import load_tiny

EXAMPLES_PER_OPERATION = 8  # small: the whole fuzz stays a few seconds on a shared 2-core machine
UNAUTHORIZED_EXAMPLES = 2
KEY = {"X-API-Key": "fuzz-key"}
# Every answer must be a documented status (status_code_conformance), 401/408/413/429 included.
CHECKS = [not_a_server_error, status_code_conformance]


def test_no_operation_answers_a_server_error(client_for: Callable[..., TestClient]) -> None:
    client = client_for(api_key=KEY["X-API-Key"], max_queue=1, max_upload_bytes=1 << 20)
    load_tiny(client, headers=KEY)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    tested, authorized, unauthorized = [], set(), set()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # a stream: a random id is a plain 404/422, a real one streams until the job ends
        authorized |= _fuzz(operation, KEY, EXAMPLES_PER_OPERATION)
        unauthorized |= _fuzz(operation, {}, UNAUTHORIZED_EXAMPLES)  # no key, or a generated wrong one
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 14, tested  # every operation except the SSE stream was exercised
    assert unauthorized == {200, 401}, unauthorized  # 200: the health probes, open to all
    assert {200, 404, 422} <= authorized and 401 not in authorized, authorized


def _fuzz(operation: Any, headers: dict[str, str], examples: int) -> set[int]:
    seen: set[int] = set()

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    fuzz()
    return seen
