"""Schemathesis fuzz of the OpenAPI schema: whatever a client sends, the service answers without a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.service.conftest import load_tiny

EXAMPLES_PER_OPERATION = 8  # small: the whole fuzz stays a few seconds on a shared 2-core machine


def test_no_operation_answers_a_server_error(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_queue=1, max_upload_bytes=1 << 20)
    load_tiny(client)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # a stream: a random id is a plain 404/422, a real one streams until the job ends

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        fuzz()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 13, tested  # every operation except the SSE stream was exercised
