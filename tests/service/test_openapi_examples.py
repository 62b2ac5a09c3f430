"""Swagger UI's examples (issue 13): each error status shows an error of its own kind, and the result example
has the shape of a real result (``fine`` an object like the mapped view, not a list)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.example_result import EXAMPLE_RESULT
from tests.service.conftest import FAST_PARAMS, load_tiny

ROOT = Path(__file__).resolve().parents[2]


def documented_statuses() -> dict[str, str]:
    section = (ROOT / "docs" / "API.md").read_text().split("## Error codes", 1)[1]
    return dict(re.findall(r"^\| `([a-z_]+)` \| ([0-9x]+|job) \|", section, flags=re.MULTILINE))


def error_examples(schema: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """(method, path, status, example code) of every documented error response."""
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                example = response.get("content", {}).get("application/json", {}).get("example")
                if int(status) >= 400 and example is not None and "error" in example:
                    found.append((method, path, int(status), example["error"]["code"]))
    return found


def test_each_error_status_shows_an_example_of_its_own(client_for: Callable[..., TestClient]) -> None:
    schema = client_for().get("/openapi.json").json()
    examples, statuses = error_examples(schema), documented_statuses()
    assert len(examples) > 30
    for method, path, status, code in examples:
        assert statuses[code] in (str(status), "4xx"), (method, path, status, code)
    by_operation: dict[tuple[str, str], list[str]] = {}
    for method, path, _, code in examples:
        by_operation.setdefault((method, path), []).append(code)
    assert all(len(codes) == len(set(codes)) for codes in by_operation.values()), by_operation
    submit = {code for method, path, _, code in examples if (method, path) == ("post", "/v1/validations")}
    assert {"dataset_split_missing", "not_found", "invalid_request", "queue_full"} <= submit
    # every response lists its status's own example: no operation shows path_rejected for a 404 or a 429
    assert {code for *_, code in examples if code == "path_rejected"} == {"path_rejected"}


def _shape(value: Any) -> Any:
    """Keys (recursively); every list is just ``list`` (per-class rows are compared on their own)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return "list" if isinstance(value, list) else "value"


def test_the_result_example_has_the_shape_of_a_real_result(
    client_for: Callable[..., TestClient], synthetic_dataset: Path
) -> None:
    client = client_for()
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    real = client.post("/v1/validations?wait=true", json=body).json()["result"]
    example = json.loads(json.dumps(EXAMPLE_RESULT))
    assert isinstance(example["metrics"]["fine"], dict)
    for part in ("cache", "cache_job"):  # the example shows some caches of the four
        real[part] = {name: real[part][name] for name in example[part]}
    assert _shape(example) == _shape(real)
    for view in (example["metrics"], example["metrics"]["fine"]):
        assert set(view["per_class"][0]) == set(real["metrics"]["per_class"][0])
