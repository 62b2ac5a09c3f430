"""A completion webhook survives a restart: the real server (a subprocess) is killed (-9) after the first
failed delivery, started again on the same state directory, and the receiver, which fails twice, still
gets the signed notification from the restarted process."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from smartcash_client import verify_signature
from tests.service.conftest import FAST_PARAMS, wait_final
from tests.service.servers import ServerProcess
from tests.service.webhook_receiver import Receiver

SECRET = "restart-secret"


def _server(state: Path, checkpoint_root: Path, data_root: Path) -> ServerProcess:
    return ServerProcess(
        state,
        checkpoint_root,
        data_root,
        SMARTCASH_WEBHOOK_SECRET=SECRET,
        SMARTCASH_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        SMARTCASH_WEBHOOK_BACKOFF_S="3",
        SMARTCASH_WEBHOOK_POLL_S="0.1",
    )


def _wait_attempts(client: httpx.Client, job_id: str, attempts: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/validations/{job_id}").json()["notification"]["attempts"] < attempts:
        assert time.monotonic() < deadline, "the attempt was not recorded in time"
        time.sleep(0.02)


def test_an_undelivered_notification_is_delivered_by_the_restarted_server(
    tmp_path: Path, checkpoint_root: Path, data_root: Path, synthetic_dataset: Path
) -> None:
    state = tmp_path / "state"
    with Receiver(SECRET.encode(), statuses=[500, 500]) as receiver:
        first = _server(state, checkpoint_root, data_root).start()
        try:
            with first.client() as client:
                body = {
                    "checkpoint": "tiny.safetensors",
                    "dataset": synthetic_dataset.name,
                    "params": FAST_PARAMS,
                    "callback_url": receiver.url,
                }
                submitted = client.post("/v1/validations", json=body)
                assert submitted.status_code == 202, submitted.text
                job_id = submitted.json()["id"]
                assert wait_final(client, job_id)["status"] == "succeeded"
                receiver.wait_for(1)
                _wait_attempts(client, job_id, 1)  # the failure is recorded: the next try is due in 3 s
        finally:
            first.kill9()  # before the retry is due: the next attempts are the new process's
        killed_at = time.time()
        second = _server(state, checkpoint_root, data_root).start()
        try:
            deliveries = receiver.wait_for(3, timeout=120)
            with second.client() as client:
                notification = client.get(f"/v1/validations/{job_id}").json()["notification"]
                deadline = time.monotonic() + 30
                while notification["state"] != "delivered" and time.monotonic() < deadline:
                    time.sleep(0.1)
                    notification = client.get(f"/v1/validations/{job_id}").json()["notification"]
        finally:
            second.stop()
    assert len(deliveries) == 3 and all(d.received_at > killed_at for d in deliveries[1:])
    assert all(d.signature_ok for d in deliveries)
    assert all(verify_signature(SECRET, d.headers, d.body, now=d.received_at) for d in deliveries)
    assert {d.payload["job"]["id"] for d in deliveries} == {job_id}
    assert deliveries[-1].payload["job"]["status"] == "succeeded"
    assert deliveries[-1].payload["metrics"]["map50_95"] is not None
    assert notification["state"] == "delivered" and notification["attempts"] == 3
    assert len(receiver.deliveries) == 3  # delivered once it succeeded: no more attempts

