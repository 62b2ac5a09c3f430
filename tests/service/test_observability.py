"""Metric labels stay bounded and request ids stay single-line tokens, whatever clients send."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from service.logs import new_request_id


def test_request_metrics_label_unknown_methods_as_other(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    for index in range(3):  # each invented method would otherwise be a new time series
        client.request(f"BREW{index}", "/v2/health/live")
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'method="other",route="/v2/health/live",status="405"' in text


def test_request_id_with_a_trailing_newline_is_replaced() -> None:
    # ``$`` matches before a final newline: the id would reach log lines and the response header
    assert new_request_id("trace-42") == "trace-42"
    assert len(new_request_id("trace-42\n")) == 32
