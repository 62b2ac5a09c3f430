"""The OpenAPI document lists the answers the request guard gives before any route runs.

``RequestGuard`` refuses requests by path and body alone: 401 on every protected path, 408 and 413 on
every operation that takes a body. No route declares them (no route code runs), so they are added here
from the same rules the guard applies, and the schema cannot drift from what the service returns
(tests/service/test_openapi_statuses.py sends each of them and checks it is documented).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.guard import is_protected

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
_GUARD_RESPONSES: list[tuple[str, Callable[[str, dict[str, Any]], bool], str]] = [
    ("401", lambda path, operation: is_protected(path), "missing or wrong `X-API-Key` (`unauthorized`)"),
    (
        "408",
        lambda path, operation: "requestBody" in operation,
        "the body did not arrive in time (`request_timeout`); the connection is closed",
    ),
    (
        "413",
        lambda path, operation: "requestBody" in operation,
        "the body is over its size limit (`payload_too_large`), refused before it is parsed",
    ),
]


def document_guard_responses(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the generated document carries the guard's responses."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _add_guard_responses(path, operation)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_guard_responses(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status, applies, description in _GUARD_RESPONSES:
        if applies(path, operation):
            documented = responses.setdefault(status, {**_ERROR, "description": description})
            documented.setdefault("content", _ERROR["content"])
