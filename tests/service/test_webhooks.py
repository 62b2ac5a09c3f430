"""Completion webhooks delivered by the real app to a real receiver on loopback: signature, retries with
backoff, failure after the last attempt, no redirects, and refusals at submit."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final
from tests.service.webhook_receiver import Receiver

Client = Callable[..., TestClient]
SECRET = "test-webhook-secret"
WEBHOOKS: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_backoff_s": 0.3,
    "webhook_poll_s": 0.05,
    "webhook_timeout_s": 5.0,
    "public_url": "http://validator.test:8000",
}


def _submit(client: TestClient, dataset: str, callback_url: str, **extra: Any) -> Any:
    body = {"model": "tiny", "dataset": dataset, "params": FAST_PARAMS, "callback_url": callback_url, **extra}
    return client.post("/v1/validations", json=body)


def _notification(client: TestClient, job_id: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notification = client.get(f"/v1/validations/{job_id}").json()["notification"]
        if notification["state"] == state:
            return notification
        time.sleep(0.05)
    raise AssertionError(f"notification of {job_id} not {state} in {timeout} s: {notification}")


def test_a_receiver_that_fails_twice_gets_the_signed_summary_on_the_third_attempt(
    client_for: Client, synthetic_dataset: Path
) -> None:
    client = client_for(**WEBHOOKS)
    load_tiny(client)
    with Receiver(SECRET.encode(), statuses=[500, 503]) as receiver:
        submitted = _submit(client, synthetic_dataset.name, receiver.url, tags={"run": "exp7", "epoch": "3"})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        final = wait_final(client, job_id)
        deliveries = receiver.wait_for(3)
        notification = _notification(client, job_id, "delivered")
    assert all(delivery.signature_ok for delivery in deliveries)
    assert {d.headers["x-smartcash-delivery"] for d in deliveries} == {job_id}
    assert {d.headers["x-smartcash-event"] for d in deliveries} == {"validation.finished"}
    first, second, third = (d.received_at for d in deliveries)
    assert second - first >= 0.3 * 0.9 and third - second >= 0.6 * 0.9  # backoff doubles
    payload = deliveries[-1].payload
    assert payload == deliveries[0].payload  # the same summary on every attempt (only the signature moves)
    assert payload["event"] == "validation.finished" and payload["job"]["id"] == job_id
    assert payload["job"]["status"] == "succeeded" and payload["job"]["tags"] == {"run": "exp7", "epoch": "3"}
    metrics = final["result"]["metrics"]
    assert payload["metrics"]["map50"] == metrics["map50"]
    assert payload["metrics"]["map50_95"] == metrics["map50_95"]
    assert len(payload["metrics"]["per_class_ap50"]) == len(metrics["per_class"])
    assert payload["links"]["self"] == f"http://validator.test:8000/v1/validations/{job_id}"
    assert payload["links"]["run"] == "http://validator.test:8000/v1/runs/exp7"
    assert notification["attempts"] == 3 and notification["last_status_code"] == 204
    assert notification["url"] == receiver.url and notification["delivered_at"] is not None


def test_a_tampered_body_or_old_timestamp_does_not_verify(
    client_for: Client, synthetic_dataset: Path
) -> None:
    from tests.service.webhook_receiver import signature_ok

    client = client_for(**WEBHOOKS)
    load_tiny(client)
    with Receiver(SECRET.encode()) as receiver:
        wait_final(client, _submit(client, synthetic_dataset.name, receiver.url).json()["id"])
        delivery = receiver.wait_for(1)[0]
    assert delivery.signature_ok
    sent = int(delivery.headers["x-smartcash-timestamp"])
    assert not signature_ok(SECRET.encode(), delivery.headers, delivery.body + b" ", sent)
    assert not signature_ok(b"other secret", delivery.headers, delivery.body, sent)
    assert not signature_ok(SECRET.encode(), delivery.headers, delivery.body, sent + 3600)  # a replay


def test_a_cancelled_job_notifies_too_and_giving_up_is_recorded(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated, **{**WEBHOOKS, "webhook_max_attempts": 2})
    load_tiny(client)
    with Receiver(SECRET.encode(), statuses=[500] * 4) as receiver:
        running = _submit(client, synthetic_dataset.name, receiver.url).json()["id"]
        assert gated.started.wait(30)
        queued = _submit(client, synthetic_dataset.name, receiver.url).json()["id"]
        assert client.post(f"/v1/validations/{queued}/cancel").json()["status"] == "cancelled"
        failed = _notification(client, queued, "failed")
        gated.gate.set()
        wait_final(client, running)
        _notification(client, running, "failed")
        deliveries = receiver.wait_for(4)
    cancelled = [d.payload for d in deliveries if d.payload["job"]["id"] == queued]
    assert len(cancelled) == 2  # max_attempts, then no more
    assert cancelled[0]["job"]["status"] == "cancelled" and cancelled[0]["metrics"] is None
    assert cancelled[0]["job"]["error"]["code"] == "cancelled"
    assert failed["attempts"] == 2 and failed["last_status_code"] == 500
    assert failed["last_error"] == "HTTP 500"
    assert failed["next_attempt_at"] is None


def test_redirects_are_not_followed(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for(**{**WEBHOOKS, "webhook_max_attempts": 1})
    load_tiny(client)
    with Receiver(SECRET.encode()) as elsewhere, Receiver(
        SECRET.encode(), statuses=[307], location=elsewhere.url
    ) as receiver:
        job_id = _submit(client, synthetic_dataset.name, receiver.url).json()["id"]
        wait_final(client, job_id)
        failed = _notification(client, job_id, "failed")
        assert len(receiver.wait_for(1)) == 1
    assert failed["last_status_code"] == 307 and elsewhere.deliveries == []


@pytest.mark.parametrize(
    ("settings", "url", "message"),
    [
        ({}, "http://127.0.0.1:9/x", "sends no webhooks"),  # the default: webhooks off
        ({"webhook_allowed_hosts": "127.0.0.1"}, "http://127.0.0.1:9/x", "sends no webhooks"),  # no secret
        (WEBHOOKS, "http://10.0.0.1:9/x", "not allowed"),
        (WEBHOOKS, "http://localhost:9/x", "not allowed"),
        (WEBHOOKS, "file:///etc/passwd", "http"),
    ],
)
def test_callbacks_the_service_will_not_call_are_refused_at_submit(
    client_for: Client, synthetic_dataset: Path, settings: dict[str, Any], url: str, message: str
) -> None:
    client = client_for(**settings)
    load_tiny(client)
    refused = _submit(client, synthetic_dataset.name, url)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "callback_refused"
    assert message in refused.json()["error"]["message"]
    assert client.get("/v1/validations").json()["total"] == 0


def test_the_backoff_doubles_is_capped_and_stops_after_the_last_attempt() -> None:
    from service.webhooks.dispatcher import WebhookConfig

    config = WebhookConfig(secret=b"s", max_attempts=6, backoff_s=2.0, backoff_max_s=10.0)
    waits = [config.retry_in(attempts) for attempts in range(1, 7)]
    assert waits[-1] is None  # the 6th failed attempt was the last
    for wait, expected in zip(waits[:-1], (2.0, 4.0, 8.0, 10.0, 10.0), strict=True):
        assert wait is not None and expected * 0.9 <= wait <= expected * 1.1
    assert config.lease_s >= 3 * config.timeout_s  # a live deliverer never loses its lease mid-POST
